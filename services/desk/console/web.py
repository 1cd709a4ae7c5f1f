"""The console's session, CSRF and page rendering (no routes here: see ``routes``).

Session: the pasted staff token, verified, in the cookie ``desk_session`` (HttpOnly,
SameSite=Strict, Secure when DESK_COOKIE_SECURE). Every request verifies it again: expiry
and keys are the token's, never a server session.

CSRF: both defences. Every form carries ``csrf`` = SHA-256 of the session token (a value an
attacker cannot compute, since the HttpOnly cookie is unreadable to them), checked in
constant time; and every POST whose ``Origin`` names another host is refused. SameSite=Strict
keeps the cookie off cross-site requests in the first place.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.desk.console.i18n import TEXT, Lang, Words, choose_lang

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SESSION_COOKIE = "desk_session"
LANG_COOKIE = "desk_lang"
HOME = "/desk/lists/mine"
CSP = ("default-src 'none'; style-src 'nonce-{n}'; script-src 'nonce-{n}'; form-action 'self'; "
       "frame-src 'self'; frame-ancestors 'self'; base-uri 'none'; img-src 'self' data:")
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


class CsrfRefused(Exception):
    """A POST without the session's CSRF token, or from another origin."""


@cache
def environment() -> Environment:
    """The console's Jinja2 environment: autoescape on for every template."""
    return Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                       autoescape=select_autoescape(["j2", "html"], default=True, default_for_string=True),
                       trim_blocks=True, lstrip_blocks=True)


def csrf_of(session_token: str) -> str:
    """The CSRF token of a session: a digest of the session token."""
    return hashlib.sha256(b"complaints-desk-console-csrf\0" + session_token.encode()).hexdigest()


def check_post(form: Mapping[str, str], *, session_token: str | None, origin: str | None, host: str | None,
               need_session: bool = True) -> None:
    """Refuse a POST from another origin, or (with a session) without the session's CSRF token."""
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != (host or "")):
        raise CsrfRefused("the form was posted from another origin")
    if not need_session:
        return
    given = form.get("csrf") or ""
    if session_token is None or not hmac.compare_digest(given, csrf_of(session_token)):
        raise CsrfRefused("the form's CSRF token does not match the session")


def safe_next(target: str | None) -> str:
    """A same-site console path to go on to after sign-in (never another site)."""
    if target and target.startswith("/desk/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME


def language(query: Mapping[str, str], cookies: Mapping[str, str], accept: str | None) -> Lang:
    """The page's language (?lang=, cookie, Accept-Language)."""
    return choose_lang(query, cookies.get(LANG_COOKIE), accept)


def render(name: str, *, lang: Lang, path: str, who: Any = None, session_token: str | None = None,
           **context: Any) -> tuple[str, str]:
    """A page of the console, and the CSP header that goes with it (a fresh nonce)."""
    nonce = secrets.token_urlsafe(16)
    words = Words(lang)
    units = {k: TEXT[k][0 if lang == "zh" else 1]
             for k in ("unit_d", "unit_h", "unit_m", "left", "overdue_by")}
    html = environment().get_template(name).render(
        t=words, lang=lang, path=path, quoted_path=quote(path), who=who, nonce=nonce, units=units,
        csrf=csrf_of(session_token) if session_token else "", new_key=lambda: str(uuid.uuid4()), **context)
    return html, CSP.format(n=nonce)


def cookie_options(*, secure: bool) -> dict[str, Any]:
    """The session cookie's attributes."""
    return {"path": "/desk", "httponly": True, "samesite": "Strict", "secure": secure}
