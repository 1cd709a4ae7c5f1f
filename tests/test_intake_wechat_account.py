"""A WeChat sender's openid: sealed by intake into the registration (``SealedContact.account``),
opened by the notifier only for its WeChat transport, gone with the customer's data key
(docs/privacy.md, docs/architecture.md "Replies on the customer's channel").

Unit tests over fakes (intake's ports, a dict key store, the fake WeChat API); the last test runs
intake and the notifier's opener on the real key store (Redis) and erases the customer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Channel,
    ComplaintRegistered,
    Contact,
    InboundMessage,
    InboundReceived,
)
from services.common import sealing
from services.common.pii_keys import KeyStore, erase
from services.common.policy import load_policy
from services.intake import logic as intake_logic
from services.intake.handlers import Accepted, Intake
from services.intake.metrics import IntakeMetrics
from services.notifier import logic
from services.notifier.messages import SealedAddress
from services.notifier.opening import ErasedContact, OpeningTransport
from tests.conftest import PII_MASTER_KEYS
from tests.fakes import DictRegistrations, DictRevisits, DictTimelines, FixedClock, RecordingPublisher
from tests.fakes.wechat_api import FakeWeChat
from tests.test_notifier_wechat import Wired, note, transport
from tests.test_pii_keys import Topic
from tools import privacy_cli
from tools.cli import parser

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
OTHER_OPENID = "oUpF8uKx2_otherFollower0000a"
IDENTITY = b"k" * 16
T0 = datetime(2026, 12, 3, 2, tzinfo=UTC)  # 10:00 in Shanghai: no quiet hours


class DictKeys:
    """The data key store over a dict, sealing for real: what intake (``current``, ``link``,
    ``open``) and the notifier's opener (``data_key``) use of services.common.pii_keys.KeyStore;
    ``erase`` deletes a customer's keys as `complaints erase-customer` does."""

    def __init__(self) -> None:
        self.masters = sealing.MasterKeys.parse(sealing.generate_master_keys("k1"))
        self.deks: dict[tuple[str, str], bytes] = {}
        self.now: dict[str, str] = {}  # subject -> current kid
        self.aliases: dict[str, set[str]] = {}

    async def current(self, subject: str) -> tuple[str, bytes]:
        if subject not in self.now:
            record, dek = sealing.new_data_key(self.masters, subject, now=T0)
            self.deks[(subject, record.kid)], self.now[subject] = dek, record.kid
        kid = self.now[subject]
        return kid, self.deks[(subject, kid)]

    async def link(self, subject: str, aliases: Iterable[str]) -> int:
        known = self.aliases.setdefault(subject, set())
        fresh = set(aliases) - known - {subject}
        known |= fresh
        return len(fresh)

    async def data_key(self, subject: str, kid: str) -> bytes | None:
        return self.deks.get((subject, kid))

    async def open(self, contact: Contact) -> Contact:
        s = contact.sealed
        if s is None:
            return contact
        return sealing.open_contact(contact, {k: d for (subj, k), d in self.deks.items() if subj == s.subject})

    def erase(self, subject: str) -> None:
        self.deks = {k: d for k, d in self.deks.items() if k[0] != subject}
        self.now.pop(subject, None)


def push(text: str, *, sender: str = OPENID, msg_id: str = "7300000000000000001") -> str:
    """An official-account text push, as WeChat sends it."""
    return (f"<xml><ToUserName><![CDATA[gh_0a1b2c3d4e5f]]></ToUserName>"
            f"<FromUserName><![CDATA[{sender}]]></FromUserName><CreateTime>1764727200</CreateTime>"
            f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content>"
            f"<MsgId>{msg_id}</MsgId></xml>")


class World:
    """Intake over fakes with a key store that seals."""

    def __init__(self, keys: Any = None) -> None:
        self.clock = FixedClock(T0)
        self.publisher = RecordingPublisher()
        self.registrations, self.timelines = DictRegistrations(), DictTimelines()
        self.keys = keys if keys is not None else DictKeys()
        self.revisits = DictRevisits()
        self.registry = CollectorRegistry()
        self.intake = Intake(
            policy=load_policy(), publisher=self.publisher, registrations=self.registrations,
            timelines=self.timelines, clock=self.clock, random_bits=iter(range(1, 10_000)).__next__,
            identity_secret=IDENTITY, metrics=IntakeMetrics.create(self.registry),
            keys=self.keys, revisits=self.revisits)

    async def receive(self, channel: Channel, payload: dict[str, Any] | str) -> Accepted:
        message = InboundMessage(channel=channel, payload=payload)
        inbound = InboundReceived.new(message, source="test", time=self.clock(), subject=None)
        return await self.intake.register(inbound, via="kafka")

    def wechat(self, text: str = "你们的客服电话一直打不通，手机屏幕坏了没人管", **kw: Any) -> Accepted:
        return asyncio.run(self.receive(Channel.wechat, push(text, **kw)))

    def registered(self) -> list[ComplaintRegistered]:
        return self.publisher.of_type(ComplaintRegistered.EVENT_TYPE)

    def everything_kept(self) -> str:
        """Every byte intake published or stored (claims, timelines)."""
        published = [e.to_bytes() for _, e in self.publisher.published]
        stored = [*self.registrations.claims.values(),
                  *(raw for events in self.timelines.events.values() for raw in events.values())]
        return b"".join([*published, *stored]).decode()


def test_a_wechat_registration_carries_the_senders_openid_sealed_under_their_key(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # Given intake with a key store
    w = World()
    # When a WeChat follower's complaint arrives
    accepted = w.wechat()
    # Then it is registered with the openid sealed as the contact's account, under the customer's
    # own key (the customer key is the keyed hash of the openid)
    (reg,) = w.registered()
    c = reg.data
    assert (accepted.kind, c.channel) == ("registered", Channel.wechat)
    assert c.customer_key == intake_logic.customer_key(Contact(), account=OPENID, secret=IDENTITY)
    s = c.customer.sealed
    assert s is not None and s.account is not None and s.subject == c.customer_key
    assert (s.name, s.phone, s.email) == (None, None, None)
    kid, dek = asyncio.run(w.keys.current(c.customer_key))
    assert s.account.kid == kid and sealing.open_field(dek, s.subject, "account", s.account) == OPENID
    # And the openid is nowhere in clear: not on the topic, in the claims, the timeline, nor the log
    assert OPENID not in w.everything_kept()
    assert OPENID not in caplog.text and OPENID.lower() not in caplog.text


def test_the_same_followers_complaints_share_their_key_and_a_redelivery_is_the_first() -> None:
    # Given a WeChat complaint registered
    w = World()
    first = w.wechat(msg_id="7300000000000000001")
    # When the same push is delivered again, and the follower sends another complaint
    again = w.wechat(msg_id="7300000000000000001")
    second = w.wechat("屏幕又坏了，第二次投诉", msg_id="7300000000000000002")
    # Then the redelivery is the first registration again (same sealed account), and the second
    # complaint is sealed under the same customer's same data key
    assert (again.duplicate, again.complaint_id) == (True, first.complaint_id)
    one, repeated, two = w.registered()
    assert repeated == one and two.data.complaint_id == second.complaint_id
    assert one.data.customer.sealed is not None and two.data.customer.sealed is not None
    a, b = one.data.customer.sealed.account, two.data.customer.sealed.account
    assert a is not None and b is not None and a.kid == b.kid and a.ct != b.ct  # a fresh nonce each
    assert len(w.keys.deks) == 1


def test_erase_customer_by_the_openid_names_the_key_intake_sealed_the_wechat_message_under(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given a WeChat follower's complaint and another follower's, registered by intake
    w = World()
    w.wechat()
    w.wechat("客服不回复", sender=OTHER_OPENID, msg_id="7300000000000000002")
    mine, theirs = w.registered()
    # When the operator names the first customer by their openid (`complaints erase-customer
    # --wechat OPENID`, parsed by the command line, with the identity key intake has)
    monkeypatch.setenv("INTAKE_IDENTITY_KEY", IDENTITY.decode())
    args = parser().parse_args(["erase-customer", "--wechat", f" {OPENID} "])
    key = privacy_cli._customer_key(args, tmp_path, None)
    # Then the key is that registration's customer key, the subject its openid is sealed under,
    # and not the other follower's
    sealed = mine.data.customer.sealed
    assert sealed is not None and sealed.account is not None
    assert key == mine.data.customer_key == sealed.subject != theirs.data.customer_key
    # And erasing it (as the command does, by that key) leaves the openid unopenable
    w.keys.erase(key)
    assert asyncio.run(w.keys.data_key(sealed.subject, sealed.account.kid)) is None
    # And an empty openid is refused rather than taken for the anonymous customer's key
    with pytest.raises(ValueError, match="not a WeChat openid"):
        privacy_cli._customer_key(parser().parse_args(["erase-customer", "--wechat", " "]), tmp_path, None)


@pytest.mark.parametrize(("channel", "payload"), [
    (Channel.social, {"platform": "weibo", "post_id": "P1", "author_handle": "li_lei_88",
                      "text": "@brand 手机屏幕坏了没人管"}),
    (Channel.sms, {"message_id": "SM-1", "sender": "+8613800138000", "text": "手机屏幕坏了没人管"}),
])
def test_other_channels_accounts_are_not_sealed_as_a_reply_address(channel: Channel,
                                                                   payload: dict[str, Any]) -> None:
    # Given a complaint by a channel whose account is no reply address (a post's author handle)
    # or that has a phone
    w = World()
    asyncio.run(w.receive(channel, payload))
    # Then no account is sealed into its contact
    (reg,) = w.registered()
    sealed = reg.data.customer.sealed
    assert sealed is None or sealed.account is None
    assert "li_lei_88" not in (sealed.model_dump_json() if sealed else "")


def test_the_notifier_opens_intakes_sealed_openid_for_the_wechat_api_only_and_not_once_erased() -> None:
    async def scenario(wx: FakeWeChat) -> None:
        # Given a WeChat complaint registered by intake (the follower's window open)
        w = World()
        wx.follower_wrote(OPENID)
        (await w.receive(Channel.wechat, push("手机屏幕坏了没人管")))
        (reg,) = w.registered()
        cid = reg.data.complaint_id
        # When the notifier gets the registration and drains its WeChat queue
        n = Wired(wx, w.keys)
        await n.notifier.on_registered(None, reg.to_bytes())
        await n.dispatcher.dispatch(logic.WECHAT)
        # Then the fake WeChat API received the acknowledgement for the openid intake sealed
        assert [m["touser"] for m in wx.sent] == [OPENID] and cid in wx.sent[0]["content"]
        assert n.records() == [("acknowledgement", "customer", "queued"), ("acknowledgement", "customer", "sent")]
        # and the notifier's records show the masked form, never the openid
        assert {e.data.recipient for e in n.publisher.of_type("notification.recorded")} == {"wechat:***"}
        assert OPENID not in "".join(e.to_bytes().decode() for _, e in n.publisher.published)
        # When the customer is erased and their case then resolved
        w.keys.erase(reg.data.customer_key)
        resolved = CaseEvent.new(CaseUpdate(complaint_id=cid, action=CaseAction.resolved, actor="h1",
                                            result="refunded"), source="desk", time=T0, subject=cid)
        await n.notifier.on_case_event(None, resolved.to_bytes())
        await n.dispatcher.dispatch(logic.WECHAT)
        # Then the result fails for good (erased), nothing more reaches WeChat, nobody is asked to call
        result = [r for r in n.records() if r[0] == "result"]
        assert result[-1] == ("result", "customer", "failed") and len(wx.sent) == 1
        assert not any(r[0] == "sla_warning" for r in n.records())

    async def main() -> None:
        async with FakeWeChat() as wx:
            await scenario(wx)

    asyncio.run(main())


@pytest.mark.integration
def test_on_the_real_key_store_erasing_the_customer_key_shreds_the_openid(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        prefix = f"wx-test-{uuid.uuid4().hex[:8]}:"
        topic = Topic(RecordingPublisher())
        keys = KeyStore(client, prefix=prefix, masters=sealing.master_keys(PII_MASTER_KEYS, Path("/nonexistent")),
                        publisher=topic.publisher, read=topic.read, check_interval=0.0)
        try:
            async with FakeWeChat() as wx:
                # Given a WeChat complaint sealed by intake on the real key store
                wx.follower_wrote(OPENID)
                w = World(keys)
                await w.receive(Channel.wechat, push("手机屏幕坏了没人管"))
                (reg,) = w.registered()
                s = reg.data.customer.sealed
                assert s is not None and s.account is not None
                # and the notifier's opener hands the WeChat API the openid
                opener = OpeningTransport(transport(wx), keys)
                sealed = SealedAddress(subject=s.subject, field="account", value=s.account, masked="wechat:***")
                await opener.send(note(f"customer:{s.subject}").model_copy(update={"sealed_address": sealed}))
                assert [m["touser"] for m in wx.sent] == [OPENID]
                # When the customer is erased by their customer key (`complaints erase-customer
                # --customer-key`), as for a phone or an e-mail
                done = await erase(client, prefix=prefix, subject=reg.data.customer_key, bootstrap=[],
                                   read=topic.read, tomb=topic.tomb)
                assert done["tombstoned"] == 1
                # Then the sealed openid no longer opens: the send fails for good, WeChat gets nothing
                assert await keys.data_key(s.subject, s.account.kid) is None
                with pytest.raises(ErasedContact):
                    await opener.send(note(f"customer:{s.subject}").model_copy(update={"sealed_address": sealed}))
                assert len(wx.sent) == 1
        finally:
            async for k in client.scan_iter(match=f"{prefix}*"):
                await client.delete(k)
            await client.aclose()

    asyncio.run(main())
