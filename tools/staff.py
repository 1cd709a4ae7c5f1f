"""`complaints staff token`: mint a staff bearer token for the embedded stack (HS256).

The secret is the desk's (DESK_JWT_SECRET, DESK_JWT_SECRET_FILE, else
$COMPLAINTS_DATA_DIR/desk-jwt-secret, which `complaints up` creates). A deployment with an
identity provider (DESK_JWKS) gets its tokens there, not here.
"""

from __future__ import annotations

import argparse
import sys
import time

from services.common.errors import ConfigError
from services.common.policy import parse_duration

DEMO_SUPERVISOR = {"sub": "demo-supervisor", "roles": ["supervisor"], "department": "service"}


def token(*, sub: str, roles: list[str], department: str | None, ttl: str) -> str:
    """A signed token for the configured desk (ConfigError when there is no HS256 secret)."""
    from services.common.settings import load_settings
    from services.desk.auth import mint
    from services.desk.settings import DeskSettings

    settings = load_settings(DeskSettings)
    if settings.key_mode() != "hs256":
        raise ConfigError("environment: DESK_JWKS: tokens come from the identity provider, "
                          "not from `complaints staff token`")
    try:
        lifetime = parse_duration(ttl)
    except ValueError as exc:
        raise ConfigError(f"--ttl: {exc}") from None
    return mint(settings.hs256_secret(), sub=sub, roles=roles, department=department, ttl=lifetime,
                now=time.time(), issuer=settings.jwt_issuer, audience=settings.jwt_audience)


def _token(args: argparse.Namespace) -> int:
    print(token(sub=args.id, roles=args.role, department=args.department, ttl=args.ttl))
    return 0


def add_staff(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `staff token` to the `complaints` command line."""
    staff = sub.add_parser("staff", help="staff identity for the desk (services/desk)")
    ssub = staff.add_subparsers(dest="staff_command", required=True)
    t = ssub.add_parser("token", help="print a bearer token for the embedded stack's desk")
    t.add_argument("--id", required=True, help="the staff id (the token's sub: every event's actor)")
    t.add_argument("--role", action="append", required=True,
                   help="a role of the policy's staff section (repeat for several)")
    t.add_argument("--department", help="the person's department (a roster department; none by "
                                        "default, which handlers and department heads need)")
    t.add_argument("--ttl", default="8h", help="lifetime, e.g. 30m, 8h, 2d (default 8h)")
    t.set_defaults(func=_token)


if __name__ == "__main__":
    from tools.cli import main

    sys.exit(main(["staff", *sys.argv[1:]]))
