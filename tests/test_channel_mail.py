"""The email channel adapter: MIME structure, charsets, encodings, attachments, and hostile input."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.common.errors import Rejected
from services.intake.channels.base import ChannelMessage
from services.intake.channels.mail import MAX_BYTES, html_to_text, parse

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "email"
CST = timezone(timedelta(hours=8))
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
       b"\x1f\x15\xc4\x89")
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _example(name: str) -> str:
    return (EXAMPLES / name).read_text(encoding="ascii")


def _mail(*headers: str, body: bytes = b"") -> bytes:
    head = "\r\n".join(("MIME-Version: 1.0", *headers)).encode()
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("example", "subject", "name", "email", "message_id", "occurred_at", "in_text"),
    [
        ("plain_utf8.eml", "Blender stopped working after one week", "Li Wei", "li.wei@example.com",
         "<20231108211542.4711@mail.example.com>", datetime(2023, 11, 8, 21, 15, 42, tzinfo=CST),
         ["PowerMix 600 blender (order A-20231101-0042)", "full refund of 499 CNY — I do not"]),
        ("gbk_alternative.eml", "冰箱不制冷，售后一直不上门", "王喆", "wangzhe@example.com",
         "<5F3A9C21.0B7D@example.com>", datetime(2023, 11, 14, 10, 30, tzinfo=CST),
         ["双门冰箱（型号 BCD-216，订单号 JD-88231907）", "要求退货退款", "王喆"]),
        ("html_only_qp.eml", "Double charge – please refund", "Doe, Jane", "jane.doe@example.com",
         "<CAF+example.8812@mail.example.com>",
         datetime(2023, 11, 6, 8, 5, 9, tzinfo=timezone(timedelta(hours=-5))),
         ["I was charged twice for my SmartHome Plus subscription – $29.99 on 3 Nov",
          "refund the duplicate charge & explain", "<one charge per month>"]),
        ("mixed_attachment.eml", "屏幕维修多收费", "陈小姐", "chen.customer@example.com",
         "<mixed-7731@mail.example.com>", datetime(2023, 11, 3, 19, 2, 11, tzinfo=CST),
         ["发票显示收费680元", "退还差价"]),
    ],
)
def test_examples_parse_to_their_facts(example: str, subject: str, name: str, email: str, message_id: str,
                                       occurred_at: datetime, in_text: list[str]) -> None:
    # Given a stored example message; When it is parsed
    msg = parse(_example(example))
    # Then subject, sender, id, time (with the sender's own offset) and body come out as written
    assert (msg.subject, msg.name, msg.email, msg.message_id) == (subject, name, email, message_id)
    assert msg.occurred_at == occurred_at
    assert msg.occurred_at is not None and msg.occurred_at.utcoffset() == occurred_at.utcoffset()
    assert all(fragment in msg.text for fragment in in_text)
    assert "\ufffd" not in msg.text and msg.text == msg.text.strip()
    assert (msg.first_contact, msg.language, msg.phone) == (None, None, None)


def test_html_only_body_becomes_text_without_markup_script_or_style() -> None:
    # Given an HTML-only, quoted-printable message; When parsed
    text = parse(_example("html_only_qp.eml")).text
    # Then tags, the script, the style and the title are gone and entities are resolved
    for leftover in ("<p", "<b>", "tracking", "font-family", "Complaint", "&amp;", "&nbsp;", "=E2", "=\n"):
        assert leftover not in text
    assert text.startswith("Dear Customer Service,\n\nI was charged twice")
    assert text.endswith("Jane Doe")


def test_attachments_become_evidence_references_with_digest_never_bytes() -> None:
    # Given a multipart/mixed message with a PDF (RFC 2231 name) and a PNG; When parsed
    msg = parse(_example("mixed_attachment.eml"))
    # Then each attachment is one Evidence: name, media type, size and sha256 of the decoded bytes
    assert [e.model_dump(exclude_none=True) for e in msg.evidence] == [
        {"name": "发票-invoice.pdf", "media_type": "application/pdf", "size": len(PDF),
         "sha256": hashlib.sha256(PDF).hexdigest()},
        {"name": "payment-screenshot.png", "media_type": "image/png", "size": len(PNG),
         "sha256": hashlib.sha256(PNG).hexdigest()},
    ]
    assert msg.details == {"attachments": 2}
    assert "PDF-1.4" not in msg.model_dump_json()


def test_the_alternative_html_part_is_not_evidence() -> None:
    # Given a multipart/alternative message; When parsed; Then the plain part is the text, no evidence
    msg = parse(_example("gbk_alternative.eml"))
    assert msg.evidence == [] and msg.details == {}
    assert "<p>" not in msg.text and msg.text.startswith("您好：")


@pytest.mark.parametrize("wrap", [
    lambda raw: raw,
    lambda raw: {"raw": raw},
    lambda raw: {"raw_base64": base64.encodebytes(raw.encode("ascii")).decode("ascii")},
], ids=["text", "raw", "raw_base64"])
def test_the_three_payload_forms_parse_alike(wrap) -> None:  # type: ignore[no-untyped-def]
    # Given one message as text, as {"raw": ...} and as wrapped {"raw_base64": ...}
    raw = _example("gbk_alternative.eml")
    # When parsed; Then all three give the same message
    assert parse(wrap(raw)) == parse(raw)


@pytest.mark.parametrize(
    ("charset", "body", "expected"),
    [
        ("GB2312", "屏幕有坏点，要求换货".encode("gbk"), "屏幕有坏点，要求换货"),
        ("GB2312", "王喆投诉：镕铸件开裂".encode("gbk"), "王喆投诉：镕铸件开裂"),  # GBK-only chars
        ("gbk", "退款".encode("gbk"), "退款"),
        ("GB18030", "退款\U00020000".encode("gb18030"), "退款\U00020000"),
        ("utf-8", "不满意".encode(), "不满意"),
        ("x-unknown-charset", "不满意".encode(), "不满意"),  # unknown label: UTF-8 guessed
        ("us-ascii", "差评".encode("gbk"), "差评"),  # wrong label: UTF-8 fails, GB18030 fits
        ("rot13", b"refund please", "refund please"),  # not a text encoding
        ("utf-8", b"broken \xff\xfe tail", "broken \ufffd\ufffd tail"),  # bad bytes: replaced, not fatal
    ],
)
def test_body_charsets_decode_or_degrade_gracefully(charset: str, body: bytes, expected: str) -> None:
    # Given a base64 body in some declared charset
    raw = _mail("Subject: t", f"Content-Type: text/plain; charset={charset}", "Content-Transfer-Encoding: base64",
                body=base64.encodebytes(body))
    # When parsed; Then the text is right (or lossy with U+FFFD), never an error
    assert parse({"raw_base64": base64.b64encode(raw).decode()}).text == expected


def test_raw_8bit_gbk_headers_are_guessed() -> None:
    # Given a non-compliant mail with raw GBK bytes in Subject and From
    raw = (b"Subject: \xc6\xc1\xc4\xbb\xbb\xb5\xc1\xcb\r\nFrom: \xd5\xc5\xc8\xfd <zs@example.com>\r\n"
           b"Content-Type: text/plain; charset=gbk\r\n\r\n\xc6\xc1\xc4\xbb\xbb\xb5\xc1\xcb")
    # When parsed; Then the header text is decoded as GB18030
    msg = parse({"raw_base64": base64.b64encode(raw).decode()})
    assert (msg.subject, msg.name, msg.email, msg.text) == ("屏幕坏了", "张三", "zs@example.com", "屏幕坏了")


@pytest.mark.parametrize("headers", [
    "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit",
    "Content-Type: text/plain; charset=utf-8",
    "",  # no MIME headers at all
])
def test_text_payloads_with_unencoded_chinese_keep_it(headers: str) -> None:
    # Given a raw message handed over as text, its 8-bit body not transfer-encoded
    raw = f"Subject: 投诉：快递丢件\nFrom: 刘女士 <liu@example.com>\n{headers}\n\n快递显示已签收，但我没有收到包裹。"
    # When parsed; Then the Chinese text, subject and name survive
    msg = parse(raw)
    assert (msg.subject, msg.name, msg.text) == ("投诉：快递丢件", "刘女士", "快递显示已签收，但我没有收到包裹。")


def test_a_header_that_crashes_the_stdlib_parser_costs_only_its_parameters() -> None:
    # Given an attachment whose Content-Disposition makes CPython's header parser raise IndexError
    raw = ("From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
           "The kettle leaks.\n--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename*\n"
           "Content-Transfer-Encoding: base64\n\nJVBERg==\n--b--\n")
    # When parsed; Then the complaint survives and the attachment is kept without its file name
    msg = parse(raw)
    assert msg.text == "The kettle leaks."
    assert [(e.name, e.media_type, e.size) for e in msg.evidence] == [("attachment-1", "application/pdf", 4)]


def test_oversized_fields_are_clipped_not_fatal() -> None:
    # Given a huge body, subject and message id; When parsed
    msg = parse(f"Subject: {'s' * 3000}\nMessage-ID: <{'i' * 400}>\n\n{'x' * 150_000}")
    # Then each is clipped to the model's limit and the truncation is recorded
    assert (len(msg.text), len(msg.subject or ""), len(msg.message_id or "")) == (100_000, 2000, 300)
    assert msg.details == {"truncated": True}


def test_a_sender_the_address_parser_cannot_read_leaves_the_sender_open() -> None:
    # Given a From header of nested comments deep enough to exhaust the stdlib's recursive parser
    msg = parse("From: " + "(" * 1500 + "\nSubject: noisy fan\n\nThe fan rattles.")
    # When parsed; Then the complaint stands without a sender
    assert (msg.text, msg.subject, msg.name, msg.email) == ("The fan rattles.", "noisy fan", None, None)


_HOSTILE = {
    # each would take minutes to hours in CPython's own parsers (html.parser, decode_header, header
    # parameters, multipart nesting), which are quadratic on these shapes
    "open-tags-html": "Content-Type: text/html\n\nHi" + "<a " * 200_000,
    "lone-lt-html": "Content-Type: text/html\n\nHi" + "<" * 1_000_000,
    "unclosed-words": "Subject: " + "=?utf-8?q?a" * 100_000 + "\n\nbody",
    "header-params": "Content-Type: text/plain; " + "a=b; " * 200_000 + "\n\nbody",
    "header-at-signs": "Content-Type: text/plain; a=" + "@" * 1_000_000 + "\n\nbody",
    "deep-comments": "From: " + "(" * 1_000_000 + "\n\nbody",
    "many-parts": "Content-Type: multipart/mixed; boundary=b\n\n" + "--b\n\n" * 200_000,
    "many-headers": "X-A: b\n" * 200_000 + "\nbody",
    "many-typed-parts": "Content-Type: multipart/mixed; boundary=b\n\nbody\n"  # just inside every cap
                        + "".join(f"--b\nContent-Type: text/plain; n{i}*0*=x'y'{'%E5' * 300}\n\nx\n" for i in range(199)),
}


@pytest.mark.timeout(60)  # a hang guard, not a speed goal: the stdlib parsers took minutes here
@pytest.mark.parametrize("payload", _HOSTILE.values(), ids=_HOSTILE.keys())
def test_hostile_shapes_are_answered_not_hung(payload: str) -> None:
    # Given a payload shaped to trigger super-linear parsing; When parsed
    # Then it is answered: a message, or a reason naming the channel
    try:
        assert parse(payload).text
    except Rejected as exc:
        assert str(exc).startswith("email: ")


@pytest.mark.parametrize(("payload", "reason"), [
    (_HOSTILE["many-parts"], "more than 1000 '--' boundary lines"),
    (_HOSTILE["many-headers"], "more than 20000 header field lines"),
    ("Content-Type: multipart/mixed; boundary=b\n\n" + "--b\nContent-Type: text/plain\n\nx\n" * 201,
     "more than 200 Content-\\* header lines"),
])
def test_too_many_parts_or_headers_are_rejected(payload: str, reason: str) -> None:
    # Given a message with more structure than any complaint needs; When parsed; Then Rejected
    with pytest.raises(Rejected, match=reason):
        parse(payload)


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Tue, 14 Nov 2023 10:30:00 +0800", datetime(2023, 11, 14, 10, 30, tzinfo=CST)),
        ("14 Nov 2023 10:30:00 GMT", datetime(2023, 11, 14, 10, 30, tzinfo=UTC)),
        ("Tue, 14 Nov 2023 10:30:00 -0000", datetime(2023, 11, 14, 10, 30, tzinfo=UTC)),
        ("Tue, 14 Nov 2023 10:30:00", None),  # no zone: ambiguous, dropped
        ("next Tuesday", None),
        ("Tue, 31 Feb 2023 10:30:00 +0800", None),
    ],
)
def test_dates_keep_their_offset_or_are_dropped(date: str, expected: datetime | None) -> None:
    # Given a Date header; When parsed; Then an aware time with the original offset, or none
    msg = parse(f"Date: {date}\nSubject: s\n\nbody")
    assert msg.occurred_at == expected
    if expected is not None:
        assert msg.occurred_at is not None and msg.occurred_at.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "no header fields"),
        ("just some words, not a message", "no header fields"),
        ("Subject: only headers\n", "email: no text body"),
        ("Subject: blank\n\n   \n\t\n", "email: no text body"),
        ("Content-Type: text/html\n\n<script>alert(1)</script><p> </p>", "email: no text body"),
        ("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/pdf\n"
         "Content-Transfer-Encoding: base64\n\nJVBERg==\n--b--\n", "email: no text body"),
        ({"raw_base64": "not base64!"}, "raw_base64"),
        ({"raw_base64": "全角"}, "raw_base64"),
        ({"raw": 42}, "'raw'"),
        ({"subject": "x"}, "'raw'"),
        ("Subject: big\n\n" + "x" * MAX_BYTES, "larger than 10 MB"),
        ({"raw_base64": "A" * (MAX_BYTES * 2)}, "larger than 10 MB"),
        ({"raw_base64": "A" * (MAX_BYTES * 2 + 4)}, "larger than 10 MB"),
    ],
    ids=["empty", "prose", "headers-only", "blank-body", "empty-html", "attachment-only", "bad-b64",
         "non-ascii-b64", "raw-not-str", "no-raw", "too-big", "too-big-decoded", "too-big-b64"],
)
def test_unusable_payloads_are_rejected_with_a_reason(payload: str | dict[str, object], reason: str) -> None:
    # Given an unusable payload; When parsed; Then Rejected names the problem
    with pytest.raises(Rejected, match=reason):
        parse(payload)


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<p>a&amp;b</p><p>c&nbsp;&lt;d&gt;</p>", "a&b\n\nc <d>"),
        ("<style>p{}</style><script>x()</script>text", "text"),
        ("line1<br>line2<br/>line3", "line1\nline2\nline3"),
        ("a<!-- hidden -->b<!--[if mso]><x>c", "ab"),
        ("<SCRIPT>x()</script >y<a href=\"x\">link</a>", "ylink"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("<b>bold</b> and <i>italic</i>", "bold and italic"),
        ("<![if !supportLists]>legacy<![endif]>", "legacy"),  # Outlook conditional markup
        ("<!x[ unterminated", "<!x[ unterminated"),
    ],
)
def test_html_to_text(markup: str, expected: str) -> None:
    # Given HTML; When converted; Then readable text
    assert html_to_text(markup).strip() == expected


# ---- property tests: whatever arrives, parse returns a message or raises Rejected / ValidationError --


def _survives(payload: object) -> None:
    # When parsed; Then a ChannelMessage, or Rejected / ValidationError: never any other exception
    try:
        assert isinstance(parse(payload), ChannelMessage)  # type: ignore[arg-type]
    except (Rejected, ValidationError):
        pass


_FRAGMENTS = st.sampled_from([
    "=?GB2312?B?", "=?gbk?Q?", "=?utf-8?B?5oqV6K+J?=", "?=", "=E5=", "=\r\n", "multipart/mixed; boundary=b",
    'multipart/alternative; boundary="b"', "text/html; charset=gbk", "text/plain; charset=x-nope",
    "charset=rot13", "charset*=utf-8''%E5%8F", "base64", "quoted-printable", "8bit", "x-uuencode",
    "attachment; filename*=UTF-8''%E5%8F%91.pdf", 'inline; filename="=?GB2312?B?1cU=?="', "message/rfc822",
    "<", ">", '"', ",", ";", ":", "@", "(", ")", "\\", "\r\n ", "\n", "\r", "--b", "--b--", "\r\n\r\n",
    "Mon, 6 Nov 2023 08:05:09 -0500", "-0000", "+9999", "\x00", "\ud800", "\udcff", "<p>", "<![if", "&#x110000;",
])
_SOUP = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=12)), max_size=10).map("".join)
_NAMES = st.sampled_from(["Subject", "From", "Date", "Message-ID", "Content-Type", "Content-Transfer-Encoding",
                          "Content-Disposition", "MIME-Version", "To", "X-Junk", ""])
_HEADER = st.builds(lambda name, value: f"{name}: {value}", _NAMES, _SOUP)
_MESSAGE = st.builds(lambda headers, sep, body: "\r\n".join(headers) + sep + body,
                     st.lists(_HEADER, max_size=8), st.sampled_from(["\r\n\r\n", "\n\n", "\r\n", ""]), _SOUP)


@FUZZ
@given(st.text())
def test_any_text_is_parsed_or_rejected(text: str) -> None:
    # Given any text at all
    _survives(text)


@FUZZ
@given(st.binary(), st.sampled_from(["latin-1", "utf-8"]))
def test_any_bytes_are_parsed_or_rejected(data: bytes, codec: str) -> None:
    # Given any bytes, both through the base64 form and decoded to text
    _survives({"raw_base64": base64.b64encode(data).decode()})
    _survives(data.decode(codec, errors="replace"))


@FUZZ
@given(_MESSAGE)
def test_header_soup_is_parsed_or_rejected(message: str) -> None:
    # Given headers and bodies assembled from MIME, RFC 2047 and charset fragments and random text
    _survives(message)
    _survives({"raw_base64": base64.b64encode(message.encode("utf-8", "surrogatepass")).decode()})


@FUZZ
@given(st.dictionaries(st.sampled_from(["raw", "raw_base64", "xml", "text"]),
                       st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text(max_size=3)))))
def test_any_json_object_is_parsed_or_rejected(payload: dict[str, object]) -> None:
    # Given any JSON-like object, with or without the expected key
    _survives(payload)
