"""`complaints erase-customer`: make one customer's personal data unreadable everywhere (docs/privacy.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any


def _customer_key(args: argparse.Namespace, data_dir: Any, policy_file: Any) -> str:
    if args.customer_key:
        return str(args.customer_key).strip()
    from services.common.policy import load_policy
    from services.common.privacy import identity_key
    from services.desk.logic import customer_key_of

    env = os.environ.get("INTAKE_IDENTITY_KEY")
    secret = identity_key(None if env is None else _secret(env), data_dir)
    if args.wechat is not None:
        return _wechat_key(args.wechat, secret=secret)
    region = load_policy(policy_file).intake.default_region
    return customer_key_of(args.phone or args.email, region=region, secret=secret)


def _wechat_key(openid: str, *, secret: bytes) -> str:
    """The customer key intake gives a WeChat sender: its keyed hash of the sender's openid
    (``FromUserName``; a WeChat message carries no phone or e-mail); ValueError when the text
    cannot be an openid."""
    from schemas.events import Contact
    from services.intake.channels.base import ChannelMessage
    from services.intake.logic import customer_key

    openid = openid.strip()
    longest = ChannelMessage.model_fields["account"].metadata[0].max_length  # intake's own limit
    if not openid or len(openid) > longest:  # empty would be the key of every anonymous complaint
        raise ValueError(f"customer: not a WeChat openid (1 to {longest} characters)")
    return customer_key(Contact(), account=openid, secret=secret)


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def _erase(args: argparse.Namespace) -> int:
    from services.common.errors import ConfigError
    from services.common.pii_keys import erase
    from services.common.runtime import redis_client
    from services.common.settings import CommonSettings, load_settings

    settings = load_settings(CommonSettings)
    try:
        subject = _customer_key(args, settings.data_dir, settings.policy_file)
    except (ConfigError, ValueError) as exc:
        print(f"erase-customer: {exc}", file=sys.stderr)
        return 2

    async def run() -> dict[str, int]:
        redis = redis_client(settings)
        try:
            return await erase(redis, prefix=settings.redis_prefix, subject=subject,
                               bootstrap=settings.bootstrap_list())
        finally:
            await redis.aclose()

    done = asyncio.run(run())
    # the customer key is a keyed hash, no personal data; nothing else of the customer is printed
    linked = (f" (with {done['linked_customers']} linked customer key(s): the same customer's other "
              "identifiers, e.g. the phone a customer who also gave this e-mail is keyed by)"
              if done["linked_customers"] else "")
    if done["tombstoned"] or done["redis_keys_deleted"]:
        print(f"erased customer {subject}{linked}: {done['tombstoned']} data key(s) tombstoned on "
              f"complaints.keys ({done['keys_on_topic']} live on the topic, {done['keys_cached']} cached), "
              f"{done['redis_keys_deleted']} Redis cache key(s) deleted; "
              "running services drop their in-memory keys at their next look (1 s)")
    else:
        print(f"customer {subject}: no data key left (erased already, or nothing of theirs was sealed); "
              "erasure signalled again")
    return 0


def add_privacy_commands(sub: Any) -> None:
    e = sub.add_parser("erase-customer", help="delete a customer's data keys: their sealed name, phone, "
                                              "e-mail and WeChat openid become unreadable everywhere "
                                              "(docs/privacy.md)")
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer-key", metavar="K", help="the customer key (as the archive and desk show it)")
    who.add_argument("--phone", metavar="P", help="the customer's phone number (keyed as intake does)")
    who.add_argument("--email", metavar="E", help="the customer's e-mail address")
    who.add_argument("--wechat", metavar="OPENID", help="a WeChat customer's openid (the sender of "
                                                        "their messages to the official account)")
    e.set_defaults(func=_erase)
