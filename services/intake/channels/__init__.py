"""Channel adapters: one per channel, each turning its payload into a ChannelMessage."""

from __future__ import annotations

import importlib
from functools import cache

from schemas.events import Channel
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


def parse(channel: Channel, payload: Payload) -> ChannelMessage:
    """Parse ``payload`` with its channel's adapter (ValidationError or Rejected when unusable)."""
    return parser(channel)(payload)


__all__ = ["ChannelMessage", "Parser", "Payload", "parse", "parser"]
