"""The wechat channel adapter: official-account pushes, and XML that must never be trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.events import Evidence
from services.common.errors import Rejected
from services.intake.channels.base import ChannelMessage
from services.intake.channels.wechat import MAX_CHARS, parse

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "wechat"
OPENID = "oExample_openid_7Hq2Lx9Pz"
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _push(msg_type: str, *elements: str, sender: str = OPENID, created: str = "1700000000") -> str:
    return (f"<xml><ToUserName><![CDATA[gh_0a1b2c3d4e5f]]></ToUserName>"
            f"<FromUserName><![CDATA[{sender}]]></FromUserName><CreateTime>{created}</CreateTime>"
            f"<MsgType><![CDATA[{msg_type}]]></MsgType>{''.join(elements)}<MsgId>7300000000000000001</MsgId></xml>")


@pytest.mark.parametrize(
    ("example", "text", "message_id", "occurred_at", "evidence"),
    [
        ("text.xml", "你好，我上周在你们徐汇门店修的手机（订单号 R-20231108-017），拿回来第二天又黑屏了，"
         "店员还说是我自己摔的。我要求免费重新维修，并给个说法。", "24318734512345678",
         datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), []),
        ("image.xml", "[image]", "24318734512345699", datetime(2023, 11, 14, 22, 19, 20, tzinfo=UTC),
         [Evidence(name="Example_MediaId_k3J9dQ2vXw8rT5yU1oP7aS4f",
                   url="https://mmbiz.example.com/mmbiz_jpg/broken-screen-photo/0")]),
    ],
)
def test_examples_parse_to_their_facts(example: str, text: str, message_id: str, occurred_at: datetime,
                                       evidence: list[Evidence]) -> None:
    # Given a stored push; When parsed
    msg = parse((EXAMPLES / example).read_text(encoding="utf-8"))
    # Then the openid is the account, MsgId the id, CreateTime a UTC time, Content the text
    assert (msg.account, msg.message_id, msg.text, msg.evidence) == (OPENID, message_id, text, evidence)
    assert msg.occurred_at == occurred_at and msg.occurred_at is not None
    assert msg.occurred_at.utcoffset() == timedelta(0)
    assert (msg.name, msg.phone, msg.email, msg.first_contact) == (None, None, None, None)


def test_the_object_form_parses_like_the_text() -> None:
    # Given the same push as text and as {"xml": ...}; When parsed; Then both agree
    xml = (EXAMPLES / "text.xml").read_text(encoding="utf-8")
    assert parse({"xml": xml}) == parse(xml)


@pytest.mark.parametrize(
    ("elements", "fmt", "text", "evidence"),
    [
        ("<Recognition><![CDATA[空调漏水，师傅一直没来]]></Recognition><MediaId>voice-1</MediaId>", "amr",
         "空调漏水，师傅一直没来", [Evidence(name="voice-1", media_type="audio/amr")]),
        ("<Recognition>The heater is broken</Recognition>", "speex", "The heater is broken", []),
        ("<Recognition>Noisy fridge</Recognition><MediaId>v2</MediaId>", "ogg?", "Noisy fridge",
         [Evidence(name="v2")]),
    ],
)
def test_voice_messages_use_the_recognised_text(elements: str, fmt: str, text: str,
                                                evidence: list[Evidence]) -> None:
    # Given a voice push with WeChat's speech recognition; When parsed
    msg = parse(_push("voice", f"<Format>{fmt}</Format>", elements))
    # Then the recognition is the text and the recording is evidence by MediaId
    assert (msg.text, msg.evidence, msg.details) == (text, evidence, {"msg_type": "voice"})


@pytest.mark.parametrize(
    ("elements", "evidence"),
    [
        ("<PicUrl>http://mmbiz.example.com/p/1</PicUrl>", Evidence(name="image", url="http://mmbiz.example.com/p/1")),
        ("<PicUrl>javascript:alert(1)</PicUrl><MediaId>m1</MediaId>", Evidence(name="m1")),
        ("<MediaId>m2</MediaId>", Evidence(name="m2")),
    ],
)
def test_image_messages_become_evidence_references(elements: str, evidence: Evidence) -> None:
    # Given an image push; When parsed; Then one Evidence with MediaId and a safe http(s) PicUrl
    assert parse(_push("image", elements)).evidence == [evidence]


def test_a_missing_create_time_leaves_the_time_open() -> None:
    # Given a push without CreateTime; When parsed; Then there is simply no occurred_at
    xml = _push("text", "<Content>坏了</Content>").replace("<CreateTime>1700000000</CreateTime>", "")
    assert parse(xml).occurred_at is None


_XXE = """<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><FromUserName>o1</FromUserName><MsgType>text</MsgType><Content>&xxe;</Content></xml>"""
_LAUGHS = ("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
           + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1 if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
           + "]><xml><FromUserName>o1</FromUserName><MsgType>text</MsgType><Content>&lol9;</Content></xml>")
_EXTERNAL_DTD = ('<!DOCTYPE xml SYSTEM "http://attacker.example.com/x.dtd"><xml><FromUserName>o1</FromUserName>'
                 "<MsgType>text</MsgType><Content>hi</Content></xml>")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (_push("event", "<Event><![CDATA[subscribe]]></Event>"), "event pushes are not complaints"),
        (_push("EVENT", "<Event>CLICK</Event><EventKey>menu</EventKey>"), "event pushes are not complaints"),
        (_push("voice", "<MediaId>v</MediaId><Format>amr</Format>"), "voice message without recognition text"),
        (_push("voice", "<Recognition>  </Recognition>"), "voice message without recognition text"),
        (_push("text", "<Content><![CDATA[ ]]></Content>"), "text message without Content"),
        (_push("image", "<PicUrl>ftp://x</PicUrl>"), "image message without PicUrl or MediaId"),
        (_push("location", "<Location_X>31.2</Location_X>"), "unsupported MsgType"),
        (_push("text", "<Content>x</Content>", sender=""), "FromUserName"),
        (_push("", "<Content>x</Content>"), "MsgType"),
        (_push("text", "<Content>x</Content>").replace("<MsgType><![CDATA[text]]></MsgType>", ""), "MsgType"),
        (_push("text", "<Content>x</Content>", created="soon"), "CreateTime"),
        (_push("text", "<Content>x</Content>", created="1.7e9"), "CreateTime"),
        (_push("text", "<Content>x</Content>", created="-5"), "CreateTime"),
        (_push("text", "<Content>x</Content>", created="１７００"), "CreateTime"),  # full-width digits
        (_push("text", "<Content>x</Content>", created="999999999999"), "CreateTime"),
        (_XXE, "forbidden XML"),
        (_LAUGHS, "forbidden XML"),
        (_EXTERNAL_DTD, "forbidden XML"),
        ("<xml><FromUserName>o1</FromUserName>", "malformed XML"),
        ("not xml at all", "malformed XML"),
        ("", "malformed XML"),
        ("<xml>\ud800</xml>", "malformed XML"),
        ("<root><FromUserName>o1</FromUserName><MsgType>text</MsgType></root>", "<xml>"),
        ({"content": "x"}, "'xml'"),
        ({"xml": 5}, "'xml'"),
        ("<xml>" + "a" * MAX_CHARS + "</xml>", "larger than"),
    ],
    ids=["subscribe", "click", "voice-no-recognition", "voice-blank", "text-blank", "image-bad-url",
         "location", "no-sender", "blank-type", "no-type", "time-word", "time-float", "time-negative",
         "time-fullwidth", "time-overflow", "xxe", "billion-laughs", "external-dtd", "unclosed", "prose",
         "empty", "lone-surrogate", "wrong-root", "no-xml-key", "xml-not-str", "too-big"],
)
def test_unusable_pushes_are_rejected_naming_the_part(payload: str | dict[str, object], reason: str) -> None:
    # Given an unusable, hostile or non-complaint push; When parsed; Then Rejected names why
    with pytest.raises(Rejected, match=reason):
        parse(payload)


# ---- property tests: whatever arrives, parse returns a message or raises Rejected / ValidationError --


def _survives(payload: object) -> None:
    # When parsed; Then a ChannelMessage, or Rejected / ValidationError: never any other exception
    try:
        assert isinstance(parse(payload), ChannelMessage)  # type: ignore[arg-type]
    except (Rejected, ValidationError):
        pass


_TAGS = st.sampled_from(["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "PicUrl",
                         "MediaId", "Recognition", "Format", "Event", "xml", "x"])
_VALUES = st.one_of(
    st.text(max_size=20), st.sampled_from(["text", "image", "voice", "event", "1700000000", "-1", "99999999999",
                                           "http://x.example.com/p", "&amp;", "&lt;", "&#0;", "&#x110000;", "&bogus;",
                                           "]]>", "<", "<![CDATA[", "\x00", "\ud800", " "]),
)
_TEXT = st.one_of(_VALUES, _VALUES.map(lambda v: f"<![CDATA[{v}]]>"))
_ELEMENT = st.builds(lambda tag, text: f"<{tag}>{text}</{tag}>", _TAGS, _TEXT)
_PROLOGUE = st.sampled_from(["", '<?xml version="1.0" encoding="utf-8"?>', '<?xml version="1.0" encoding="gbk"?>',
                             "<!DOCTYPE xml>", '<!DOCTYPE xml [<!ENTITY e "x">]>', "<!-- c -->", "\ufeff"])
_XML = st.builds(lambda prologue, root, elements, tail: f"{prologue}<{root}>{''.join(elements)}</{root}>{tail}",
                 _PROLOGUE, st.sampled_from(["xml", "XML", "root"]), st.lists(_ELEMENT, max_size=10),
                 st.sampled_from(["", "<xml/>", "junk", "\n"]))


@FUZZ
@given(st.text())
def test_any_text_is_parsed_or_rejected(text: str) -> None:
    # Given any text at all
    _survives(text)
    _survives({"xml": text})


@FUZZ
@given(st.binary(), st.sampled_from(["latin-1", "utf-8", "gb18030"]))
def test_any_bytes_are_parsed_or_rejected(data: bytes, codec: str) -> None:
    # Given any bytes, decoded as text
    _survives(data.decode(codec, errors="replace"))


@FUZZ
@given(_XML)
def test_random_xml_is_parsed_or_rejected(xml: str) -> None:
    # Given XML assembled from push elements, CDATA, entities, DTDs and random text
    _survives(xml)


@FUZZ
@given(st.dictionaries(st.sampled_from(["xml", "raw", "Content"]),
                       st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text(max_size=3)))))
def test_any_json_object_is_parsed_or_rejected(payload: dict[str, object]) -> None:
    # Given any JSON-like object, with or without the expected key
    _survives(payload)
