"""Channel adapters: one per channel, each turning its payload into a ChannelMessage."""

from __future__ import annotations

import importlib
import re
from functools import cache
from typing import Any

from schemas.events import Channel
from services.common.errors import Rejected
from services.intake.channels.base import ChannelMessage, Parser, Payload

_MODULES = {
    Channel.phone: "phone", Channel.web_form: "web_form", Channel.email: "mail",
    Channel.wechat: "wechat", Channel.social: "social", Channel.app: "app", Channel.store: "store",
    Channel.sms: "sms", Channel.review_platform: "review_platform",
    Channel.survey_reply: "survey_reply", Channel.partner: "partner", Channel.letter: "letter",
}


@cache
def parser(channel: Channel) -> Parser:
    """The adapter of ``channel``."""
    module = importlib.import_module(f"{__name__}.{_MODULES[channel]}")
    parse: Parser = module.parse
    return parse


MAX_DEPTH = 16
"""How deep a payload may nest: a channel format nests three levels (a list of attachments)."""
_NAME = re.compile(r"[A-Za-z0-9_]{1,40}")
MAX_INTEGER = 10**18
"""Integers from here on are no count, size or amount: refused before a rule turns one into a float."""


def check(payload: Payload) -> None:
    """Rejected when ``payload`` nests deeper than MAX_DEPTH or holds an integer of MAX_INTEGER or more.

    Iterative, so a payload nested as deep as the JSON parser allows costs no recursion. The
    reason names the field by its path; a key that is not a plain name shows as "?" (keys of
    unknown fields are the sender's text).
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(payload, ("payload",))]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict | list):
            if len(path) > MAX_DEPTH:
                raise Rejected(f"{'.'.join(path[:4])}...: nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, (*path, str(k) if _NAME.fullmatch(str(k)) else "?")) for k, v in items)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INTEGER:
            raise Rejected(f"{'.'.join(path)}: an integer of more than {len(str(MAX_INTEGER)) - 1} digits")


def without_nul(payload: Any) -> Any:
    """``payload`` with every NUL character removed from its strings (keys too).

    NUL means nothing in a complaint, and PostgreSQL's JSON cannot store it: the archive
    would refuse the registered complaint. Call after ``check`` (the depth is bounded).
    """
    if isinstance(payload, str):
        return payload.replace("\x00", "") if "\x00" in payload else payload
    if isinstance(payload, dict):
        return {without_nul(k): without_nul(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [without_nul(v) for v in payload]
    return payload


def parse(channel: Channel, payload: Payload) -> ChannelMessage:
    """Parse ``payload`` with its channel's adapter (ValidationError or Rejected when unusable)."""
    check(payload)
    return parser(channel)(without_nul(payload))


__all__ = ["ChannelMessage", "Parser", "Payload", "parse", "parser"]
