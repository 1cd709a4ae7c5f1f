"""The ``email`` channel: a raw RFC 5322 / MIME message, as received.

Hostile mail is bounded: CPython's MIME, header and HTML parsers take quadratic time
on some inputs, so the message size, the number of MIME-part lines and the shape of
structural headers are capped, and HTML and RFC 2047 words are decoded by linear scans.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import functools
import hashlib
import re
from datetime import UTC, datetime
from email.errors import MessageError
from email.message import EmailMessage, MIMEPart
from email.utils import parseaddr, parsedate_to_datetime
from html import unescape
from itertools import islice
from typing import Any, cast

from pydantic import ValidationError

from schemas.events import Evidence
from services.common.errors import Rejected
from services.intake.channels.base import ChannelMessage, Payload

MAX_BYTES = 10 * 1024 * 1024
MAX_TEXT = 100_000
MAX_EVIDENCE = 100
MAX_LINES = {"Content-* header": 200, "'--' boundary": 1000, "header field": 20_000}
# What the stdlib parser can still raise on hostile structure or header soup.
_EMAIL_ERRORS = (MessageError, ValueError, LookupError, IndexError, TypeError, AttributeError,
                 KeyError, RecursionError)
_LINES = {"Content-* header": re.compile(rb"^content-[a-z-]*[ \t]*:", re.IGNORECASE | re.MULTILINE),
          "'--' boundary": re.compile(rb"^--", re.MULTILINE),
          "header field": re.compile(rb"^[!-9;-~]+[ \t]*:", re.MULTILINE)}
_SPECIALS = re.compile(r'[()<>@,;:"\\\[\]]')
_GB = {"gb2312", "gbk", "x-gbk", "x-gb2312"}
_SIGNATURES = {"application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature"}
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NO_ZONE = re.compile(r"-0000\b")
_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(?<=\?=)\s+(?==\?)")
# Linear-time HTML: a comment or hidden element runs to its end or the text's end, and a tag
# cannot span a "<", so no match attempt rescans the text (html.parser is quadratic on "<a <a <a").
_HIDDEN = re.compile(r"<(?=[!a-zA-Z])(?:!--.*?(?:-->|\Z)|(script|style|title|noscript)\b.*?(?:</\1\s*>|\Z))",
                     re.IGNORECASE | re.DOTALL)
_BREAK_TAG = re.compile(r"</?(?=[a-zA-Z])(?:br|p|div|li|tr|table|ul|ol|hr|blockquote|section|article"
                        r"|header|footer|h[1-6])\b[^<>]*+>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[a-zA-Z/!?][^<>]*+>")
_WHITESPACE = re.compile(r"\s+")
# The thread the notifier's messages carry (services/notifier/transports.py): a reply's
# References (or In-Reply-To) names <complaint.<number>@domain>.
_THREAD = re.compile(r"<complaint\.(\d{6}-[0-9A-HJKMNP-TV-Z]{10})@[^<>\s]{1,255}>", re.IGNORECASE)
REPLY_TO = "reply_to"
"""``details`` key of the complaint number a reply's thread names."""


class _BoundedPolicy(email.policy.EmailPolicy):
    """The default policy; structural headers of a hostile shape keep only their value, not parameters.

    Many tokens make CPython's header parser quadratic, so a header over 1000 characters or 64
    specials is parsed without its parameters; so is one the parser fails on (IndexError on
    ``attachment; filename*`` in 3.11). Parses are cached: the stdlib re-reads them per call.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if len(value) > 1000 or len(_SPECIALS.findall(value)) > 64:
            value = value.split(";", 1)[0][:200]
        return _structured(name, value)


@functools.lru_cache(maxsize=128)
def _structured(name: str, value: str) -> Any:
    try:
        return email.policy.default.header_fetch_parse(name, value)
    except _EMAIL_ERRORS:
        return email.policy.default.header_fetch_parse(name, value.split(";", 1)[0][:200])


_POLICY = cast("email.policy.EmailPolicy[EmailMessage]", _BoundedPolicy())


def parse(payload: Payload) -> ChannelMessage:
    """Parse a raw e-mail (text, or {"raw": ...} / {"raw_base64": ...}) into a channel message."""
    raw = _raw_bytes(payload)
    if len(raw) > MAX_BYTES:
        raise Rejected(f"email: message larger than {MAX_BYTES >> 20} MB")
    for kind, limit in MAX_LINES.items():  # the parser's time grows faster than linearly in these
        if sum(1 for _ in islice(_LINES[kind].finditer(raw), limit + 1)) > limit:
            raise Rejected(f"email: more than {limit} {kind} lines")
    try:
        msg = email.message_from_bytes(raw, policy=_POLICY)
        if not msg.keys():
            raise Rejected("email: not an RFC 5322 message (no header fields)")
        return _extract(msg)
    except ValidationError:
        raise
    except _EMAIL_ERRORS as exc:
        raise Rejected(f"email: unparseable message ({type(exc).__name__})") from exc


def _raw_bytes(payload: Payload) -> bytes:
    text = payload if isinstance(payload, str) else payload.get("raw")
    if isinstance(text, str):  # as bytes, so 8-bit bodies decode by their charset; lone surrogates -> "?"
        return text.encode("utf-8", "replace")
    encoded = payload.get("raw_base64") if isinstance(payload, dict) else None
    if not isinstance(encoded, str):
        raise Rejected("payload: the email channel expects the raw message, or an object with "
                       "a string 'raw' or 'raw_base64'")
    if len(encoded) > 2 * MAX_BYTES:  # base64 is 4/3 of the bytes, plus line breaks
        raise Rejected(f"email: message larger than {MAX_BYTES >> 20} MB")
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected("payload.raw_base64: not valid base64") from exc


def _extract(msg: EmailMessage) -> ChannelMessage:
    text, body = _body(msg)
    details: dict[str, str | int | float | bool] = {}
    if len(text) > MAX_TEXT:
        text, details["truncated"] = text[:MAX_TEXT], True
    evidence = _evidence(msg, body)
    if evidence:
        details["attachments"] = len(evidence)
    thread = _THREAD.findall(f"{_raw(msg, 'in-reply-to', 1000)} {_raw(msg, 'references', 10_000)}")
    if thread:
        details[REPLY_TO] = thread[-1].upper()  # the newest: References lists the oldest first
    try:
        name, addr = parseaddr(_raw(msg, "from", 2000))
    except RecursionError:  # deeply nested comments: no usable sender, but the complaint stands
        name, addr = "", ""
    name = " ".join(_words(name).split())
    subject = " ".join(_words(_raw(msg, "subject", 20_000)).split())
    message_id = _raw(msg, "message-id", 1000).strip()
    return ChannelMessage(
        text=text, subject=subject[:2000] or None, message_id=message_id[:300] or None,
        occurred_at=_date(_raw(msg, "date", 200)), name=name[:200] or None,
        email=addr if "@" in addr and len(addr) <= 320 else None,
        evidence=evidence[:MAX_EVIDENCE], details=details,
    )


def _raw(msg: EmailMessage, name: str, limit: int) -> str:
    """The first header of that name, unfolded and clipped, 8-bit bytes decoded; RFC 2047 words as sent."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            text = _FOLD.sub("", str(value)[: 2 * limit])[:limit]  # 8-bit bytes arrive as surrogates
            return text if text.isascii() else _decode(text.encode("ascii", "surrogateescape"), None)
    return ""


def _words(text: str) -> str:
    """Decode RFC 2047 encoded words (in linear time) with the same charset rules as bodies."""
    return _WORD.sub(_word, _BETWEEN_WORDS.sub("", text))


def _word(match: re.Match[str]) -> str:
    charset, encoding, data = match.groups()
    try:
        raw = (base64.b64decode(data + "=" * (-len(data) % 4)) if encoding in "bB"
               else binascii.a2b_qp(data, header=True))
    except (binascii.Error, ValueError):
        return match.group(0)
    return _decode(raw, charset)


def _codec(charset: str | None) -> str | None:
    name = (charset or "").split("*", 1)[0].strip().lower()
    try:
        found = name if name in _GB else codecs.lookup(name).name if name else None
    except (LookupError, ValueError, TypeError):
        return None
    return "gb18030" if found in _GB else found  # GBK text is often labelled GB2312; GB18030 covers both


def _decode(data: bytes, charset: str | None) -> str:
    """Bytes as text: the declared charset, else UTF-8, else GB18030; never fails."""
    declared = _codec(charset)
    for codec, errors in ((declared, "strict"), ("utf-8", "strict"), ("gb18030", "strict"),
                          (declared, "replace")):
        try:
            if codec:
                return data.decode(codec, errors)
        except (LookupError, ValueError, TypeError):
            continue
    return data.decode("utf-8", "replace")


def _date(raw: str) -> datetime | None:
    try:
        value = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if value.tzinfo is None:  # RFC 5322 3.3: -0000 is UTC with the sender's zone unknown
        return value.replace(tzinfo=UTC) if _NO_ZONE.search(raw) else None
    return value


def _body(msg: EmailMessage) -> tuple[str, MIMEPart]:
    for kind in ("plain", "html"):
        part = msg.get_body(preferencelist=(kind,))
        data = None if part is None else part.get_payload(decode=True)
        if part is None or not isinstance(data, bytes):
            continue
        text = _decode(data, part.get_content_charset())
        text = html_to_text(text) if kind == "html" else text
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if text:
            return text, part
    raise Rejected("email: no text body")


def _evidence(msg: EmailMessage, body: MIMEPart) -> list[Evidence]:
    found: list[Evidence] = []
    for part in msg.walk():
        if part is body or part.is_multipart() or part.get_content_type() in _SIGNATURES:
            continue
        filename = part.get_filename()
        if part.get_content_maintype() == "text" and not filename and not part.is_attachment():
            continue  # the other alternative, a signature, a footer
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        name = _words(filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
        media_type = part.get_content_type()
        found.append(Evidence(name=name[:300] or f"attachment-{len(found) + 1}",
                              media_type=media_type if len(media_type) <= 200 else None,
                              size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    return found


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: tags, comments, scripts and styles dropped, entities unescaped."""
    text = _WHITESPACE.sub(" ", _HIDDEN.sub("", markup))
    text = unescape(_ANY_TAG.sub("", _BREAK_TAG.sub("\n", text)))
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))
