"""Hostile payloads per channel, seeded: the same seed gives the same payloads.

Each sample starts from one of the channel's examples (``examples/<channel>/``) and applies
one mutation: the example as is, a field dropped, a field of the wrong type, a huge or
hostile string (digit runs, markup floods, numeric character references of 5000 digits),
odd unicode (controls, bidi overrides, lone surrogates, mixed scripts), extra and deeply
nested fields, numbers out of range, impossible dates, a JSON value that is not an object,
a truncated or bit-flipped body, arbitrary bytes, a wrong or missing Content-Type; text
channels (e-mail, WeChat XML, SMS) get line-level mutations of their own. Every sample
carries ids unique to its run (``tag``), so intake never answers one as a duplicate of
another, and a sample is accounted for by its own outcome.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
CHANNELS = ("phone", "web_form", "email", "wechat", "social", "app", "store", "sms",
            "review_platform", "survey_reply", "partner", "letter")
CONTENT_TYPES = {".json": "application/json", ".eml": "message/rfc822", ".xml": "application/xml",
                 ".txt": "text/plain"}
ID_FIELDS = ("call_id", "form_id", "message_id", "feedback_id", "entry_id", "post_id", "review_id",
             "reference", "survey_id")
_MESSAGE_ID = re.compile(rb"(?im)^(message-id:[ \t]*<?)")
_MSG_ID = re.compile(rb"<MsgId>[^<]*</MsgId>")

# Strings that have broken parsers somewhere: each is repeated to a length by ``_hostile``.
HOSTILE_UNITS = ("9", "1,", "1.", "12,345,", "¥", "¥ 1", "$1,000.", "万元", "1万", "<", "<a ", "<b>",
                 "</", "&#", "&#9", "&#x", "&amp;", "<!--", "<script>", "]]>", "=?utf-8?q?", "\\",
                 "\"", "\n", " ", "\t\r", "\u3000", "\u00a0", "a", "app", "起火", "退款", "refund ",
                 "٣", "١٢", "\u202e", "\u200b", "\ufeff", "e\u0301", "👍🏽",
                 "\U0001f468\u200d\U0001f469",
                 "ｒｍｂ", "１２３", "\x00", "\x1b[31m", "%s%n", "' OR 1=1 --", "{{7*7}}", "${jndi:x}")
ODD_STRINGS = ("", " ", "\u0000", "\u202eevil\u202c", "\u200b\u200b", "\ufeffbom", "ＡＰＰ闪退",
               "e\u0301\u0301",
               "𝓤𝓷𝓲𝓬𝓸𝓭𝓮", "مرحبا 退款 Привет", "\ud800", "\udfff lone", "\U0010ffff", "\u2028\u2029",
               "../../etc/passwd", "<script>alert(1)</script>", "null", "true", "0", "-1", "1e309",
               "NaN", "2026-02-30T25:61:00+08:00", "\\u0000", "%00", "a" * 301, "漢" * 5000)
ODD_NUMBERS: tuple[Any, ...] = (0, -1, 1, 5, 6, 2**31, 2**63, 10**30, -(10**30), 1.5, -0.0, 1e308, -1e308,
                                 1e-308, 3.0, 10**400)
ODD_DATES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30T10:00:00+08:00",
             "2026-11-23T09:30:00", "2026-11-23", "1700000000", "2026-11-23T09:30:00+25:00",
             "2026-11-23T09:30:00.123456789Z", "+275760-09-13T00:00:00Z", "")


@dataclass(frozen=True)
class Sample:
    """One generated message: what HTTP sends and what the Kafka path carries.

    ``body`` is the HTTP body, ``content_type`` its header (None: no header at all).
    ``payload`` is the JSON value for ``InboundMessage.payload`` on the Kafka path;
    ``record`` (when set) replaces the whole Kafka record (bytes that are no envelope).
    """

    channel: str
    kind: str
    body: bytes
    content_type: str | None
    payload: Any
    record: bytes | None = None


def examples(channel: str) -> list[tuple[str, bytes]]:
    """The channel's example files: (suffix, bytes)."""
    files = sorted(p for p in (EXAMPLES / channel).iterdir() if p.suffix in CONTENT_TYPES)
    return [(p.suffix, p.read_bytes()) for p in files]


def samples(channel: str, count: int, *, seed: int = 0, tag: str = "fz",
            complaint_ids: Sequence[str] = ()) -> Iterator[Sample]:
    """``count`` samples for ``channel``; ``complaint_ids``: known complaints survey replies may answer."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; one of: {', '.join(CHANNELS)}")
    rnd = random.Random(f"{channel}:{seed}")  # noqa: S311 - test data, not secrets
    bases = examples(channel)
    for n in range(count):
        suffix, raw = rnd.choice(bases)
        yield _sample(rnd, channel, suffix, raw, f"{tag}{n}", complaint_ids)


def _sample(rnd: random.Random, channel: str, suffix: str, raw: bytes, unique: str,
            complaint_ids: Sequence[str]) -> Sample:
    content_type: str | None = CONTENT_TYPES[suffix]
    roll = rnd.random()
    if roll < 0.04:
        return _bytes_sample(rnd, channel, content_type)
    if suffix == ".json":
        value: Any = json.loads(raw)
        if complaint_ids and "complaint_id" in value and rnd.random() < 0.5:
            value["complaint_id"] = rnd.choice(complaint_ids)
        kind, value = _mutate_object(rnd, value)
        if value is _NESTED_BODY:
            depth = rnd.choice((50, 190, 250, 1200, 5000))
            body = b'{"a":' * depth + b"1" + b"}" * depth
            return Sample(channel, kind, body, content_type, None,
                          record=_nested_record(channel, depth, unique))
        value = _unique(value, unique)
        body = _dumps(value)
        payload: Any = value
    else:
        kind, body = _mutate_text(rnd, suffix, raw)
        body = _unique_text(suffix, body, unique)
        payload = _text_payload(channel, body, as_base64=rnd.random() < 0.3)
    roll = rnd.random()
    if roll < 0.05:  # the body cut short, or a few bytes flipped
        kind, body = f"{kind}+truncated", body[: rnd.randrange(len(body) + 1)]
        payload = _text_payload(channel, body, as_base64=False)
    elif roll < 0.09:
        flipped = bytearray(body)
        for _ in range(rnd.randint(1, 8)):
            if flipped:
                flipped[rnd.randrange(len(flipped))] = rnd.randrange(256)
        kind, body = f"{kind}+flipped", bytes(flipped)
        payload = _text_payload(channel, body, as_base64=False)
    roll = rnd.random()
    if roll < 0.03:
        kind, content_type = f"{kind}+no-content-type", None
    elif roll < 0.08:
        kind = f"{kind}+content-type"
        content_type = rnd.choice(("text/plain", "application/json", "application/xml", "message/rfc822",
                                   "application/octet-stream", "image/png", "application/json; charset=gbk",
                                   "multipart/form-data", "application/x-www-form-urlencoded",
                                   "application/problem+json", "text/html; charset=utf-8", "*/*"))
    return Sample(channel, kind, body, content_type, payload)


_NESTED_BODY = object()


def _text_payload(channel: str, body: bytes, *, as_base64: bool) -> Any:
    """The Kafka payload of a text body: the text (bytes that are not UTF-8 replaced), or an
    e-mail's bytes in base64, as ``complaints replay`` sends 8-bit mail."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        as_base64, text = True, body.decode("utf-8", "replace")
    if channel == "email" and as_base64:
        return {"raw_base64": base64.b64encode(body).decode()}
    return text


def _nested_record(channel: str, depth: int, unique: str) -> bytes:
    """A Kafka record whose payload nests ``depth`` objects (written by hand: no serialiser nests so)."""
    return (b'{"specversion":"1.0","id":"' + unique.encode() + b'","type":"inbound.received","source":"fuzz",'
            b'"time":"2026-11-23T00:00:00Z","data":{"channel":"' + channel.encode() + b'","payload":'
            + b'{"a":' * depth + b"1" + b"}" * depth + b"}}")


def _bytes_sample(rnd: random.Random, channel: str, content_type: str | None) -> Sample:
    size = rnd.choice((0, 1, 7, 64, 512, 4096, 60_000))
    body = rnd.randbytes(size)
    if rnd.random() < 0.3:
        body = bytes(b & 0x7F for b in body)  # ASCII soup: passes the UTF-8 decoder
    return Sample(channel, "bytes", body, content_type, body.decode("latin-1"),
                  record=body if rnd.random() < 0.3 else None)


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):  # an int of 400 digits, ...: send what json can write
        return json.dumps(value, ensure_ascii=True, default=str).encode()


def _hostile(rnd: random.Random) -> str:
    """A long string of one or two hostile units, 1 to 150,000 characters."""
    size = rnd.choice((1, 300, 2_000, 10_000, 20_000, 20_001, 60_000, 150_000))
    units = [rnd.choice(HOSTILE_UNITS) for _ in range(rnd.randint(1, 2))]
    text = "".join(units) * (size // max(1, len("".join(units))) + 1)
    return text[:size]


def _odd(rnd: random.Random) -> Any:
    return rnd.choice((*ODD_STRINGS, *ODD_NUMBERS, *ODD_DATES, None, True, False, [], {}, [1, "a"],
                       {"x": {"y": [None]}}))


def _mutate_object(rnd: random.Random, value: dict[str, Any]) -> tuple[str, Any]:
    keys = list(value)
    key = rnd.choice(keys)
    roll = rnd.randrange(12)
    if roll == 0:
        return "example", value
    if roll == 1:
        for k in rnd.sample(keys, rnd.randint(1, len(keys))):
            value.pop(k)
        return "missing-fields", value
    if roll == 2:
        value[key] = _odd(rnd)
        return "wrong-type", value
    if roll == 3:
        value[key] = _hostile(rnd)
        return "huge-string", value
    if roll == 4:
        text_key = next((k for k in ("description", "text", "transcript", "notes", "comment")
                         if k in value), key)
        value[text_key] = _hostile(rnd)
        return "hostile-text", value
    if roll == 5:
        value[key] = rnd.choice(ODD_STRINGS) + str(value[key])[: rnd.randint(0, 40)] + rnd.choice(ODD_STRINGS)
        return "odd-unicode", value
    if roll == 6:
        for _ in range(rnd.randint(1, 20)):
            value[rnd.choice(("x", "extra", "__proto__", "constructor", "$where", "", " ", "ａ",
                              "attachments", "details", "amount"))] = _odd(rnd)
        return "extra-fields", value
    if roll == 7:
        nested: Any = rnd.choice((1, "x", None))
        for _ in range(rnd.choice((3, 20, 60, 150))):
            nested = [nested] if rnd.random() < 0.5 else {"k": nested}
        value[key] = nested
        return "nested-field", value
    if roll == 8:
        return "nested-body", _NESTED_BODY
    if roll == 9:
        for k in keys:
            if k.endswith(("_at", "_time")):
                value[k] = rnd.choice(ODD_DATES)
        for k in ("amount", "affected_customers", "audience", "rating", "score", "size"):
            if rnd.random() < 0.5:
                value[k] = rnd.choice(ODD_NUMBERS)
        return "numbers-dates", value
    if roll == 10:
        return "not-an-object", rnd.choice(([], [value], "text", 42, None, True, 1.5, [[[]]], ""))
    value[key] = [value[key]] * rnd.randint(1, 200)
    return "list-instead", value


def _unique(value: Any, unique: str) -> Any:
    """The sample's own ids: its id fields (non-blank strings) end in ``unique``."""
    if isinstance(value, dict):
        for k in ID_FIELDS:
            if isinstance(value.get(k), str) and value[k].strip():
                value[k] = f"{value[k]}-{unique}"
    return value


def _mutate_text(rnd: random.Random, suffix: str, raw: bytes) -> tuple[str, bytes]:
    lines = raw.split(b"\n")
    roll = rnd.randrange(9)
    if roll == 0:
        return "example", raw
    if roll == 1:
        for _ in range(rnd.randint(1, 5)):
            if lines:
                lines.pop(rnd.randrange(len(lines)))
        return "missing-lines", b"\n".join(lines)
    if roll == 2:
        i = rnd.randrange(len(lines))
        lines[i: i] = [lines[rnd.randrange(len(lines))]] * rnd.randint(1, 3000)
        return "repeated-lines", b"\n".join(lines)
    if roll == 3:
        i = rnd.randrange(len(lines) + 1)
        lines.insert(i, _hostile(rnd).encode("utf-8", "surrogatepass"))
        return "hostile-text", b"\n".join(lines)
    if roll == 4:
        i = rnd.randrange(len(lines))
        lines[i] = lines[i] + rnd.choice(ODD_STRINGS).encode("utf-8", "surrogatepass")
        return "odd-unicode", b"\n".join(lines)
    if roll == 5 and suffix == ".xml":
        depth = rnd.choice((10, 500, 5000, 50_000))
        inner = b"<a>" * depth + b"x" + b"</a>" * depth
        return "nested-markup", raw.replace(b"<Content>", b"<Content>" + inner, 1)
    if roll == 5:
        depth = rnd.choice((10, 500, 5000))
        return "nested-markup", raw + b"\n" + b"<div>" * depth + b"x" + b"</div>" * depth
    if roll == 6 and suffix == ".xml":
        return "xml-construct", rnd.choice((
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><xml>&b;</xml>',
            b'<!DOCTYPE x SYSTEM "http://127.0.0.1/x.dtd"><xml/>', b"<xml><MsgType>event</MsgType></xml>",
            b"<notxml/>", b"<xml><FromUserName>a</FromUserName><MsgType>text</MsgType></xml>"))
    if roll == 6 and suffix == ".eml":
        return "mime-structure", rnd.choice((
            b"Content-Type: multipart/mixed; boundary=b\n\n" + b"--b\n" * 2000,
            b"From: a@b\nContent-Type: text/html\n\n" + b"<a " * 50_000,
            b"Subject: =?x-unknown?b?AAAA?=\n\nhi", b"From: " + b"(" * 5000 + b"\n\nbody",
            b"\n\nno headers", b"Content-Type: text/plain; " + b"a=b; " * 5000 + b"\n\nbody"))
    if roll == 7:
        return "numbers", raw.replace(b"2023", b"9" * rnd.choice((5, 400, 5000))).replace(
            b"1700000000", b"9" * rnd.choice((13, 400)))
    cut = rnd.randrange(len(raw) + 1)
    return "spliced", raw[:cut] + rnd.randbytes(rnd.randint(0, 64)) + raw[cut:]


def _unique_text(suffix: str, body: bytes, unique: str) -> bytes:
    if suffix == ".eml":
        return _MESSAGE_ID.sub(lambda m: m.group(1) + unique.encode() + b".", body, count=1)
    if suffix == ".xml":
        digits = str(int.from_bytes(hashlib.sha256(unique.encode()).digest()[:6], "big")).encode()
        return _MSG_ID.sub(b"<MsgId>" + digits + b"</MsgId>", body, count=1)
    return body
