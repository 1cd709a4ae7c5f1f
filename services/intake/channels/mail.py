"""The ``email`` channel: a raw RFC 5322 / MIME message, as received."""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import hashlib
import re
from datetime import UTC, datetime
from email.errors import MessageError
from email.header import decode_header
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import parseaddr, parsedate_to_datetime
from html import unescape
from html.parser import HTMLParser
from typing import Any, cast

from pydantic import ValidationError

from schemas.events import Evidence
from services.common.errors import Rejected
from services.intake.channels.base import ChannelMessage, Payload

MAX_BYTES = 10 * 1024 * 1024
MAX_TEXT = 100_000
MAX_EVIDENCE = 100
# What the stdlib parser can still raise on hostile structure or header soup
# (python/cpython has a long tail of IndexError / AttributeError parser bugs).
_EMAIL_ERRORS = (MessageError, ValueError, LookupError, IndexError, TypeError, AttributeError,
                 KeyError, RecursionError)


class _LenientPolicy(EmailPolicy):
    """The default policy, but a header whose parameters crash CPython's parser loses them instead.

    E.g. ``Content-Disposition: attachment; filename*`` raises IndexError in 3.11; one bad header
    must not lose the complaint.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        try:
            return super().header_fetch_parse(name, value)
        except _EMAIL_ERRORS:  # keep the value, drop its parameters (charset, filename, ...)
            return super().header_fetch_parse(name, value.split(";", 1)[0])


_POLICY = cast("EmailPolicy[EmailMessage]", _LenientPolicy())
_GB = {"gb2312", "gbk", "x-gbk", "x-gb2312"}
_SIGNATURES = {"application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature"}
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NO_ZONE = re.compile(r"-0000\b")
_SKIP = frozenset({"script", "style", "title", "noscript", "template"})
_BREAK = frozenset({"br", "p", "div", "li", "tr", "table", "ul", "ol", "hr", "blockquote", "section",
                    "article", "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6"})


def parse(payload: Payload) -> ChannelMessage:
    """Parse a raw e-mail (text, or {"raw": ...} / {"raw_base64": ...}) into a channel message."""
    raw = _raw_bytes(payload)
    if len(raw) > MAX_BYTES:
        raise Rejected(f"email: message larger than {MAX_BYTES >> 20} MB")
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
    name, addr = parseaddr(_raw(msg, "from") or "")
    name = " ".join(_words(name).split())
    subject = " ".join(_words(_raw(msg, "subject") or "").split())
    message_id = (_raw(msg, "message-id") or "").strip()
    return ChannelMessage(
        text=text, subject=subject[:2000] or None, message_id=message_id[:300] or None,
        occurred_at=_date(_raw(msg, "date")), name=name[:200] or None,
        email=addr if "@" in addr and len(addr) <= 320 else None,
        evidence=evidence[:MAX_EVIDENCE], details=details,
    )


def _raw(msg: EmailMessage, name: str) -> str | None:
    """The first header of that name, unfolded, 8-bit bytes decoded; RFC 2047 words left as sent."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            text = _FOLD.sub("", str(value))  # 8-bit bytes come through the parser as surrogates
            return text if text.isascii() else _decode(text.encode("ascii", "surrogateescape"), None)
    return None


def _words(text: str) -> str:
    """Decode RFC 2047 encoded words with the same charset rules as bodies."""
    try:
        chunks = decode_header(text)
    except _EMAIL_ERRORS:
        return text
    return "".join(
        chunk if isinstance(chunk, str)
        else _decode(chunk, charset) if charset else chunk.decode("raw-unicode-escape", "replace")
        for chunk, charset in chunks)


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.split("*", 1)[0].strip().lower()
    try:
        found = name if name in _GB else codecs.lookup(name).name
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


def _date(raw: str | None) -> datetime | None:
    try:
        value = parsedate_to_datetime(raw or "")
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if value.tzinfo is None:  # RFC 5322 3.3: -0000 is UTC with the sender's zone unknown
        return value.replace(tzinfo=UTC) if _NO_ZONE.search(raw or "") else None
    return value


def _body(msg: EmailMessage) -> tuple[str, MIMEPart]:
    for kind in ("plain", "html"):
        part = msg.get_body(preferencelist=(kind,))
        data = None if part is None else part.get_payload(decode=True)
        if part is None or not isinstance(data, bytes):
            continue
        text = _decode(data, part.get_content_charset())
        text = _tidy(html_to_text(text) if kind == "html" else text)
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


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._skipping += tag in _SKIP
        self.parts.append("\n" if tag in _BREAK else "")

    def handle_endtag(self, tag: str) -> None:
        self._skipping = max(0, self._skipping - (tag in _SKIP))
        self.parts.append("\n" if tag in _BREAK else "")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: tags, scripts and styles dropped, entities unescaped."""
    parser = _HtmlText()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except AssertionError:  # html.parser's answer to some malformed declarations
        text = unescape(re.sub(r"<[^>]*>", " ", re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", markup)))
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))
