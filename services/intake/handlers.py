"""Intake's use cases, shared by the HTTP and the Kafka path: parse, apply the rules, publish."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.envelope import Envelope, derived_id
from schemas.events import (
    ANONYMOUS_CUSTOMER,
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Channel,
    Complaint,
    ComplaintRegistered,
    Contact,
    InboundReceived,
)
from schemas.topics import LIFECYCLE, REGISTERED
from services.common import sealing
from services.common.boundary import PERMANENT, Record
from services.common.errors import Rejected, Retry
from services.common.pii_keys import KeyStore
from services.common.policy import Policy
from services.common.ports import Clock, Publisher
from services.intake import channels, logic, replies
from services.intake.channels.base import ChannelMessage
from services.intake.channels.mail import REPLY_TO
from services.intake.metrics import IntakeMetrics
from services.intake.ports import Registrations, Revisits, Timelines
from services.intake.replies import OpenRevisit, ReplyDecision, ReplyOutcome

log = logging.getLogger(__name__)
SERVICE = "intake"
PERMANENT_INPUT = (ValidationError, Rejected)
MAX_REDRAWS = 8  # draws of a complaint number before the batch is retried (Retry)
# where a customer answers a revisit: the revisit went there (a WeChat customer's by WeChat, to the
# openid their customer key is derived from, so the answer comes under the same key)
REPLY_CHANNELS = frozenset({Channel.sms, Channel.email, Channel.wechat})
# whose sender's account is the address the notifier answers (the WeChat openid): sealed into the
# registration's contact (``SealedContact.account``), never kept in clear
SEALED_ACCOUNT_CHANNELS = frozenset({Channel.wechat})


class UnknownComplaint(LookupError):
    """No complaint with this id has been registered."""


@dataclass(frozen=True)
class Accepted:
    """What intake did with a channel message."""

    complaint_id: str
    event_id: str
    duplicate: bool
    kind: str  # "registered" or "case_event"


class Intake:
    def __init__(
        self, *, policy: Policy, publisher: Publisher, registrations: Registrations,
        timelines: Timelines, clock: Clock, random_bits: Callable[[], int],
        identity_secret: bytes, metrics: IntakeMetrics, max_record_bytes: int = 1_000_000,
        keys: KeyStore | None = None, revisits: Revisits | None = None,
    ) -> None:
        self.policy = policy
        self.publisher = publisher
        self.registrations = registrations
        self.timelines = timelines
        self.clock = clock
        self.random_bits = random_bits
        self.numbers = logic.ComplaintNumbers(random_bits)  # reserved in Redis before use
        self.identity_secret = identity_secret
        self.metrics = metrics
        self.max_record_bytes = max_record_bytes
        self.keys = keys  # seals contacts; None only in tests of other concerns
        self.revisits = revisits  # open revisits by customer; None: no reply is matched to one

    # ---- the Kafka path: records of complaints.inbound and of every topic for the timeline ----

    def decode(self, value: bytes) -> InboundReceived:
        """Parse a complaints.inbound record; too large or malformed is bad input."""
        if len(value) > self.max_record_bytes:
            raise Rejected(f"record of {len(value)} bytes exceeds {self.max_record_bytes}")
        return InboundReceived.model_validate_json(value)

    async def on_inbound(self, key: bytes | None, value: bytes) -> None:
        """Register one inbound record (the boundary's record-at-a-time fallback)."""
        await self.register(self.decode(value), via="kafka")

    async def on_inbound_batch(self, records: list[Record]) -> list[BaseException | None]:
        """Register a batch of inbound records; each record's bad-input error, or None."""
        outcomes: list[BaseException | None] = [None] * len(records)
        decoded: list[tuple[int, InboundReceived]] = []
        for i, record in enumerate(records):
            try:
                decoded.append((i, self.decode(record.value)))
            except PERMANENT as exc:
                outcomes[i] = exc
        results = await self.register_many([d for _, d in decoded], via="kafka")
        for (i, _), result in zip(decoded, results, strict=True):
            if isinstance(result, BaseException):
                outcomes[i] = result
        return outcomes

    async def on_timeline_batch(self, records: list[Record]) -> list[BaseException | None]:
        """Project a batch of any complaint topic's records into the timelines."""
        return await self.project_many([r.value for r in records])

    # ---- registering ------------------------------------------------------------------

    async def register(self, inbound: InboundReceived, *, via: str) -> Accepted:
        """Register one channel message (a survey reply records a case event instead)."""
        (result,) = await self.register_many([inbound], via=via)
        if isinstance(result, BaseException):
            raise result
        return result

    async def register_many(self, inbounds: list[InboundReceived], *, via: str,
                            ) -> list[Accepted | BaseException]:
        """Register a batch: one Redis round trip for the claims, one batched publish.

        Bad input comes back as that message's exception (ValidationError or Rejected);
        a failing dependency raises for the whole batch, which is then retried whole.
        """
        results: list[Accepted | BaseException | None] = [None] * len(inbounds)
        fresh: list[tuple[int, str, ComplaintRegistered]] = []
        accounts: dict[int, str] = {}  # inbound index -> the sender's account to seal (openid)
        for i, inbound in enumerate(inbounds):
            try:
                prepared = self._prepare(inbound, via=via)
            except PERMANENT_INPUT as exc:
                results[i] = exc
                continue
            if isinstance(prepared, ChannelMessage):  # a survey reply: rare, one at a time
                try:
                    results[i] = await self._survey_reply(prepared, inbound, via=via)
                except PERMANENT_INPUT as exc:
                    results[i] = exc
                continue
            key, event, account = prepared
            fresh.append((i, key, event))
            if account:
                accounts[i] = account
        fresh = await self._answers(fresh, inbounds, results)
        fresh = await self._seal(await self._reserve_numbers(fresh, inbounds), accounts)
        stored = await self.registrations.claim_many([(k, e.to_bytes()) for _, k, e in fresh])
        events: list[ComplaintRegistered] = []
        for (i, _key, event), first in zip(fresh, stored, strict=True):
            channel = event.data.channel.value
            if first is not None and json.loads(first).get("type") == CaseEvent.EVENT_TYPE:
                # an answer to a revisit recorded before (its revisit is closed by now)
                results[i] = await self._republish_answer(first, channel)
                continue
            if first is not None:
                # Re-publish the first registration (same event id): if the first
                # attempt died before its publish, this one completes it.
                event = ComplaintRegistered.model_validate_json(first)
                self.metrics.duplicates.labels(channel).inc()
            else:
                self.metrics.registered.labels(channel, event.data.nature.value).inc()
            events.append(event)
            results[i] = Accepted(event.data.complaint_id, event.id, first is not None, "registered")
        await self.publisher.publish_many(REGISTERED, events)
        await self.timelines.add_many([(e.data.complaint_id, e.id, e.to_bytes()) for e in events])
        return [r if r is not None else RuntimeError("unhandled") for r in results]

    async def _reserve_numbers(self, fresh: list[tuple[int, str, ComplaintRegistered]],
                               inbounds: list[InboundReceived],
                               ) -> list[tuple[int, str, ComplaintRegistered]]:
        """Reserve each new registration's complaint number (one pipelined round trip); one that
        is taken (another instance drew it in the same millisecond) is drawn again."""
        pending = list(range(len(fresh)))
        for _ in range(MAX_REDRAWS):
            reserved = await self.registrations.reserve_numbers(
                [fresh[j][2].data.complaint_id for j in pending])
            pending = [j for j, ok in zip(pending, reserved, strict=True) if not ok]
            if not pending:
                return fresh
            for j in pending:
                i, key, event = fresh[j]
                number = self.numbers.redraw(event.time)
                log.info("complaint number collision: %s taken, drawn %s instead (event %s)",
                         event.data.complaint_id, number, event.id)
                complaint = event.data.model_copy(update={"complaint_id": number})
                fresh[j] = (i, key, ComplaintRegistered.new(
                    complaint, id=derived_id("registered", number), source=SERVICE, time=event.time,
                    subject=number, cause=inbounds[i]))
        raise Retry(f"complaint numbers still taken after {MAX_REDRAWS} draws")

    async def _seal(self, fresh: list[tuple[int, str, ComplaintRegistered]],
                    accounts: Mapping[int, str],
                    ) -> list[tuple[int, str, ComplaintRegistered]]:
        """Seal each new registration's name, phone and e-mail, and the WeChat sender's openid
        (``accounts``, by inbound index), under its customer's data key (docs/privacy.md):
        nothing personal is stored or published in clear."""
        if self.keys is None:
            return fresh
        keys = self.keys
        subjects = {sealing.sealing_subject(e.data.customer_key, e.data.complaint_id, ANONYMOUS_CUSTOMER)
                    for i, _, e in fresh if e.data.customer.sealed is None
                    and (e.data.customer.name or e.data.customer.phone or e.data.customer.email
                         or i in accounts)}
        # one data key per customer (created and recorded when new), fetched concurrently
        deks = dict(zip(subjects, await asyncio.gather(*(keys.current(s) for s in subjects)), strict=True))
        out, links = [], []
        for i, key, event in fresh:
            c = event.data
            subject = sealing.sealing_subject(c.customer_key, c.complaint_id, ANONYMOUS_CUSTOMER)
            if subject in deks:
                if c.customer.phone and c.customer.email:  # keyed by the phone: the e-mail leads there too
                    links.append((subject, logic.customer_key(
                        Contact(email=c.customer.email), account=None, secret=self.identity_secret)))
                kid, dek = deks[subject]
                sealed = sealing.seal_contact(c.customer, subject=subject, kid=kid, dek=dek,
                                              account=accounts.get(i))
                event = event.model_copy(update={"data": c.model_copy(update={"customer": sealed})})
            out.append((i, key, event))
        # recorded before the registration is published: an erasure by the e-mail finds it
        await asyncio.gather(*(keys.link(subject, [alias]) for subject, alias in links))
        return out

    def _prepare(self, inbound: InboundReceived, *, via: str,
                 ) -> tuple[str, ComplaintRegistered, str | None] | ChannelMessage:
        """Parse and normalise: the registration to claim and the sender's account to seal into
        it (a WeChat openid; None on other channels), or a parsed survey reply."""
        msg = inbound.data
        channel = msg.channel.value
        self.metrics.received.labels(channel, via).inc()
        started = time.perf_counter()
        try:
            parsed = channels.parse(msg.channel, msg.payload)
            key = logic.dedupe_key(msg.channel, parsed.message_id or msg.message_id, msg.payload)
            if msg.channel is Channel.survey_reply:
                return parsed.model_copy(update={"message_id": key})
            now = self.clock()
            complaint_id = self.numbers.next(now)
            complaint = logic.normalise(
                msg.channel, parsed, complaint_id=complaint_id, dedupe=key, received_at=now,
                rules=self.policy.intake, desks=self.policy.router.channel_desks,
                identity_secret=self.identity_secret)
        except PERMANENT_INPUT as exc:
            self.metrics.rejected.labels(channel, via, type(exc).__name__).inc()
            raise
        finally:
            self.metrics.parse_seconds.labels(channel).observe(time.perf_counter() - started)
        account = parsed.account if msg.channel in SEALED_ACCOUNT_CHANNELS else None
        return key, ComplaintRegistered.new(
            complaint, id=derived_id("registered", complaint_id), source=SERVICE, time=now,
            subject=complaint_id, cause=inbound), account

    async def _survey_reply(self, parsed: ChannelMessage, inbound: InboundReceived, *,
                            via: str) -> Accepted:
        key = parsed.message_id or inbound.id
        complaint_id = parsed.complaint_ref or ""
        try:
            registered = await self._registered(complaint_id)
        except UnknownComplaint:
            self.metrics.rejected.labels(Channel.survey_reply.value, via, "UnknownComplaint").inc()
            raise Rejected(f"payload.complaint_id: no complaint {complaint_id!r}") from None
        update = CaseUpdate(complaint_id=complaint_id, action=CaseAction.satisfaction,
                            actor="customer", score=parsed.score, note=parsed.text)
        event = CaseEvent.new(update, id=derived_id("survey", key), source=SERVICE,
                              time=self.clock(), subject=complaint_id, cause=registered,
                              causationid=inbound.id)
        await self.publisher.publish(LIFECYCLE, event)
        await self.timelines.add(complaint_id, event.id, event.to_bytes())
        self.metrics.registered.labels(Channel.survey_reply.value, "satisfaction").inc()
        return Accepted(complaint_id, event.id, False, "case_event")

    # ---- answers to a revisit (回访): an SMS "4" is a satisfaction score, not a complaint ----

    async def _answers(self, fresh: list[tuple[int, str, ComplaintRegistered]],
                       inbounds: list[InboundReceived], results: list[Accepted | BaseException | None],
                       ) -> list[tuple[int, str, ComplaintRegistered]]:
        """Record the messages that answer their customer's open revisit (one lookup for the
        batch) and hand back the others, to be registered."""
        asked = [j for j, (_, _, e) in enumerate(fresh) if e.data.channel in REPLY_CHANNELS
                 and e.data.customer_key != ANONYMOUS_CUSTOMER]
        if self.revisits is None or not asked:
            return fresh
        now, window = self.clock(), self.policy.intake.reply_window
        found = await self.revisits.of_customers([fresh[j][2].data.customer_key for j in asked],
                                                 since=now - window)
        answered: set[int] = set()
        for j, open_ in zip(asked, found, strict=True):
            i, key, event = fresh[j]
            c = event.data
            text = replies.reply_text(c.description) if c.channel is Channel.email else c.description
            thread = c.details.get(REPLY_TO)
            decision = replies.match_reply(
                text, revisits=[OpenRevisit(cid, at) for cid, at in open_], now=now, window=window,
                thread=thread if isinstance(thread, str) else None)
            if decision.outcome is ReplyOutcome.no_revisit:
                continue
            self.metrics.revisit_replies.labels(c.channel.value, decision.outcome.value).inc()
            if decision.outcome in (ReplyOutcome.satisfaction, ReplyOutcome.ambiguous):
                try:
                    results[i] = await self._answer(decision, event, key, inbounds[i])
                except UnknownComplaint:  # its timeline is gone: registered as a message
                    log.warning("reply %s: complaint %s has no timeline, registered instead",
                                inbounds[i].id, decision.complaint_id)
                    continue
                answered.add(j)
        return [f for j, f in enumerate(fresh) if j not in answered]

    async def _answer(self, decision: ReplyDecision, candidate: ComplaintRegistered, key: str,
                      inbound: InboundReceived) -> Accepted:
        """The case event of an answer: satisfaction on the complaint answered, or, when it is not
        clear which, the customer's reply on the latest revisited one for a person to place."""
        assert decision.complaint_id is not None and decision.score is not None  # noqa: S101
        complaint_id, score = decision.complaint_id, decision.score
        registered = await self._registered(complaint_id)
        if decision.outcome is ReplyOutcome.satisfaction:
            update = CaseUpdate(complaint_id=complaint_id, action=CaseAction.satisfaction,
                                actor="customer", score=score.score, note=score.comment)
        else:
            others = ", ".join(decision.candidates)
            update = CaseUpdate(
                # a note, not customer_replied: that would reopen a resolved case in the archive
                complaint_id=complaint_id, action=CaseAction.note, actor="customer",
                note=(f"ambiguous reply to a revisit: reads as score {score.score}, but revisits of "
                      f"{others} are open; not recorded as satisfaction. Text: "
                      f"{candidate.data.description}")[:5000])
        event = CaseEvent.new(update, id=derived_id("reply", key), source=SERVICE, time=self.clock(),
                              subject=complaint_id, cause=registered, causationid=inbound.id)
        (first,) = await self.registrations.claim_many([(key, event.to_bytes())])
        if first is not None:  # a redelivery: the first outcome again, under its own id
            if json.loads(first).get("type") == CaseEvent.EVENT_TYPE:
                return await self._republish_answer(first, candidate.data.channel.value)
            again = ComplaintRegistered.model_validate_json(first)  # registered before: again
            self.metrics.duplicates.labels(again.data.channel.value).inc()
            await self.publisher.publish_many(REGISTERED, [again])
            await self.timelines.add(again.data.complaint_id, again.id, first)
            return Accepted(again.data.complaint_id, again.id, True, "registered")
        await self.publisher.publish(LIFECYCLE, event)
        await self.timelines.add(complaint_id, event.id, event.to_bytes())
        if decision.outcome is ReplyOutcome.satisfaction and self.revisits is not None:
            await self.revisits.close([(candidate.data.customer_key, complaint_id)])
        log.info("reply %s to the revisit of %s: %s (event %s)", inbound.id, complaint_id,
                 decision.outcome.value, event.id)
        return Accepted(complaint_id, event.id, False, "case_event")

    async def _republish_answer(self, stored: bytes, channel: str) -> Accepted:
        """Publish a recorded answer again (same event id): its first publish may have died."""
        event = CaseEvent.model_validate_json(stored)
        self.metrics.duplicates.labels(channel).inc()
        await self.publisher.publish(LIFECYCLE, event)
        return Accepted(event.data.complaint_id, event.id, True, "case_event")

    async def state(self, complaint_id: str) -> dict[str, Any]:
        """The complaint's current state and its timeline."""
        events = [json.loads(raw) for raw in await self.timelines.get(complaint_id)]
        if not any(e["type"] == ComplaintRegistered.EVENT_TYPE for e in events):
            raise UnknownComplaint(complaint_id)
        return logic.case_state(events)

    async def project(self, key: bytes | None, value: bytes) -> None:
        """Add one event from any complaint topic to that complaint's timeline."""
        (bad,) = await self.project_many([value])
        if bad is not None:
            raise bad

    async def project_many(self, values: list[bytes]) -> list[BaseException | None]:
        """Add a batch of events to their timelines in one round trip; bad ones come back."""
        outcomes: list[BaseException | None] = []
        entries: list[tuple[str, str, bytes]] = []
        revisited: set[str] = set()
        for value in values:
            try:
                event = Envelope.model_validate_json(value)
            except ValidationError as exc:
                outcomes.append(exc)
                continue
            outcomes.append(None)
            if event.subject:
                entries.append((event.subject, event.id, value))
                if replies.touches_revisit(event.type, event.data):
                    revisited.add(event.subject)
        await self.timelines.add_many(entries)
        if revisited and self.revisits is not None:
            await self._index_revisits(sorted(revisited))
        return outcomes

    async def _index_revisits(self, complaint_ids: list[str]) -> None:
        """Open or close these complaints' revisits in the index, as their timelines now say
        (in any order of arrival: a revisit answered before its record arrived stays closed)."""
        assert self.revisits is not None  # noqa: S101
        timelines = await asyncio.gather(*(self.timelines.get(c) for c in complaint_ids))
        opened: list[tuple[str, str, datetime]] = []
        closed: list[tuple[str, str]] = []
        for complaint_id, raws in zip(complaint_ids, timelines, strict=True):
            events = [json.loads(raw) for raw in raws]
            registration = next((e for e in events if e["type"] == ComplaintRegistered.EVENT_TYPE), None)
            if registration is None:
                log.warning("revisit of %s: no registration on its timeline, not indexed", complaint_id)
                continue
            try:
                complaint = ComplaintRegistered.model_validate(registration).data
            except ValidationError:
                log.warning("revisit of %s: its registration does not parse, not indexed", complaint_id)
                continue
            customers = await self._customer_keys(complaint)
            since = replies.revisit_open_since(events)
            if since is not None:
                opened += [(k, complaint_id, since) for k in customers]
            else:
                closed += [(k, complaint_id) for k in customers]
        await self.revisits.open(opened)
        await self.revisits.close(closed)

    async def _customer_keys(self, complaint: Complaint) -> list[str]:
        """The customer keys a reply of this complaint's customer may come under: its own (a
        WeChat customer's is their openid's, which their WeChat answer comes under too), and that
        of its e-mail when it is keyed on the phone (the revisit may go out by e-mail)."""
        if complaint.customer_key == ANONYMOUS_CUSTOMER:
            return []
        contact = complaint.customer
        if self.keys is not None and contact.sealed is not None and contact.sealed.email is not None:
            try:
                contact = await self.keys.open(contact)
            except sealing.Erased:
                return [complaint.customer_key]
        keys = [complaint.customer_key]
        if contact.phone and contact.email:
            keys.append(logic.customer_key(Contact(email=contact.email), account=None,
                                           secret=self.identity_secret))
        return keys

    async def _registered(self, complaint_id: str) -> ComplaintRegistered:
        for raw in await self.timelines.get(complaint_id):
            if b'"complaint.registered"' in raw:
                return ComplaintRegistered.model_validate_json(raw)
        raise UnknownComplaint(complaint_id)
