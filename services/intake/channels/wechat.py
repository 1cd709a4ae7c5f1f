"""The ``wechat`` channel: an official-account message push (plain-text mode XML)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from schemas.events import Evidence
from services.common.errors import Rejected
from services.intake.channels.base import ChannelMessage, Payload

MAX_CHARS = 1024 * 1024  # a push is a few kilobytes; anything near this is not WeChat
_SECONDS = re.compile(r"[0-9]{1,12}")
_VOICE_TYPES = {"amr": "audio/amr", "speex": "audio/speex", "mp3": "audio/mpeg"}


def parse(payload: Payload) -> ChannelMessage:
    """Parse a WeChat push (the XML text, or {"xml": ...}) into a channel message."""
    root = _root(payload)
    account = _text(root, "FromUserName")
    msg_type = (_text(root, "MsgType") or "").lower()
    if not account:
        raise Rejected("wechat: missing FromUserName")
    if not msg_type:
        raise Rejected("wechat: missing MsgType")
    if msg_type == "event":
        raise Rejected("wechat: event pushes are not complaints")
    occurred_at = _created(root)
    evidence: list[Evidence] = []
    if msg_type == "text":
        text = _text(root, "Content")
        if not text:
            raise Rejected("wechat: text message without Content")
    elif msg_type == "image":
        text, evidence = "[image]", [_image(root)]
    elif msg_type == "voice":
        text = _text(root, "Recognition")
        if not text:
            raise Rejected("wechat: voice message without recognition text")
        if media_id := _text(root, "MediaId"):
            voice_format = (_text(root, "Format") or "").lower()
            evidence = [Evidence(name=media_id, media_type=_VOICE_TYPES.get(voice_format))]
    else:
        raise Rejected("wechat: unsupported MsgType (expected text, image or voice)")
    return ChannelMessage(text=text, account=account, message_id=_text(root, "MsgId"),
                          occurred_at=occurred_at, evidence=evidence, details={"msg_type": msg_type})


def _root(payload: Payload) -> Element:
    xml = payload.get("xml") if isinstance(payload, dict) else payload
    if not isinstance(xml, str):
        raise Rejected("payload: the wechat channel expects the XML text, or an object with a string 'xml'")
    if len(xml) > MAX_CHARS:
        raise Rejected(f"wechat: payload larger than {MAX_CHARS >> 20} MB")
    try:
        root: Element = fromstring(xml, forbid_dtd=True)
    except DefusedXmlException as exc:  # DTDs, entities, external references: never in a push
        raise Rejected(f"wechat: forbidden XML construct ({type(exc).__name__})") from exc
    except (ParseError, ValueError) as exc:  # ValueError: text that cannot be UTF-8 (lone surrogates)
        raise Rejected("wechat: malformed XML") from exc
    if root.tag != "xml":
        raise Rejected("wechat: the root element must be <xml>")
    return root


def _text(root: Element, tag: str) -> str | None:
    """A direct child's text, stripped; None when absent or empty."""
    child = root.find(tag)
    value = "".join(child.itertext()).strip() if child is not None else ""
    return value or None


def _created(root: Element) -> datetime | None:
    raw = _text(root, "CreateTime")
    if raw is None:
        return None
    if not _SECONDS.fullmatch(raw):
        raise Rejected("wechat: CreateTime must be an integer (seconds since the epoch)")
    try:
        return datetime.fromtimestamp(int(raw), tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise Rejected("wechat: CreateTime out of range") from exc


def _image(root: Element) -> Evidence:
    url = _text(root, "PicUrl")
    url = url if url and url.lower().startswith(("https://", "http://")) and len(url) <= 2000 else None
    media_id = _text(root, "MediaId")
    if not media_id and not url:
        raise Rejected("wechat: image message without PicUrl or MediaId")
    return Evidence(name=media_id or "image", url=url)
