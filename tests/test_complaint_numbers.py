"""Complaint numbers: one instance never draws a number twice, however many it draws in a
millisecond (a bulk replay), and every number is reserved in Redis before use, so a collision with
another instance's number is drawn again instead of shared. The format is unchanged:
YYMMDD- + 10 Crockford base-32 characters (27 bits of milliseconds, 23 drawn bits)."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from schemas.envelope import derived_id
from schemas.events import Channel, InboundMessage, InboundReceived
from services.common.policy import load_policy
from services.intake import logic
from services.intake.adapters import NUMBER_TTL_SECONDS, RedisRegistrations
from services.intake.handlers import Intake
from services.intake.metrics import IntakeMetrics
from services.intake.ports import Registrations
from tests.fakes import DictRegistrations, DictTimelines, FixedClock, RecordingPublisher

T0 = datetime(2026, 11, 23, 9, 0, 0, 123_000, tzinfo=UTC)
NUMBER = re.compile(r"\d{6}-[0-9A-HJKMNP-TV-Z]{10}")


def test_one_instance_never_draws_a_number_twice_in_a_millisecond() -> None:
    # Given one instance's numbers and a bulk replay: 50,000 complaints in one millisecond
    numbers = logic.ComplaintNumbers(lambda: secrets.randbits(23))
    drawn = [numbers.next(T0) for _ in range(50_000)]
    # Then all differ (23 random bits each would share ~75 numbers: 50,000^2 / 2^25), in the format
    assert len(set(drawn)) == len(drawn)
    assert all(NUMBER.fullmatch(n) for n in drawn[:100])


def test_numbers_sort_by_time_and_a_redraw_is_never_an_earlier_draw() -> None:
    # Given random bits that always come out the same (the worst case for a redraw)
    numbers = logic.ComplaintNumbers(lambda: 5)
    first = [numbers.next(T0) for _ in range(3)]
    redrawn = [numbers.redraw(T0) for _ in range(3)]
    later = numbers.next(T0 + timedelta(milliseconds=1))
    # Then every number of the millisecond differs, and a later millisecond sorts after them
    assert len(set(first + redrawn)) == 6
    assert later > max(first + redrawn)
    assert first[0] == logic.complaint_number(T0, 5)  # the first of a millisecond: the random bits


def intake(registrations: Registrations, *, random_bits: int = 7) -> tuple[Intake, RecordingPublisher]:
    publisher = RecordingPublisher()
    return Intake(policy=load_policy(), publisher=publisher, registrations=registrations,
                  timelines=DictTimelines(), clock=FixedClock(T0), random_bits=lambda: random_bits,
                  identity_secret=b"k" * 16, metrics=IntakeMetrics.create(CollectorRegistry())), publisher


def inbound(n: int) -> InboundReceived:
    message = InboundMessage(channel=Channel.web_form, message_id=f"m-{uuid.uuid4().hex}-{n}",
                             payload={"description": f"The kettle leaks, case {n}", "email": "w@example.com"})
    return InboundReceived.new(message, source="test", time=T0, subject=None)


def test_a_number_taken_on_the_claim_is_drawn_again() -> None:
    async def scenario() -> None:
        # Given the number this instance will draw first is already taken (another instance's)
        registrations = DictRegistrations()
        taken = logic.complaint_number(T0, 7)
        await registrations.reserve_numbers([taken])
        service, publisher = intake(registrations)
        # When a complaint registers
        accepted = await service.register(inbound(1), via="kafka")
        # Then it got another number, consistently in the event, its id and the claim
        assert accepted.complaint_id != taken and NUMBER.fullmatch(accepted.complaint_id)
        (event,) = publisher.of_type("complaint.registered")
        assert (event.subject, event.data.complaint_id, event.id) == (
            accepted.complaint_id, accepted.complaint_id, derived_id("registered", accepted.complaint_id))
        assert accepted.complaint_id.encode() in next(iter(registrations.claims.values()))
        assert accepted.complaint_id in registrations.numbers

    asyncio.run(scenario())


@pytest.mark.integration
def test_two_instances_drawing_the_same_bits_in_the_same_millisecond_share_no_number(
        redis_url: str, redis_prefix: str) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"

    async def scenario() -> list[str]:
        # Given two intake instances on one Redis whose clocks and random bits agree (a forced
        # collision on every draw)
        client = aioredis.from_url(redis_url)
        try:
            services = [intake(RedisRegistrations(client, prefix=prefix))[0] for _ in range(2)]
            # When each registers a batch of complaints
            batches = await asyncio.gather(*(
                s.register_many([inbound(100 * k + n) for n in range(20)], via="kafka")
                for k, s in enumerate(services)))
            # Then the numbers are reserved under the prefix for a while (two minutes)
            ttl = await client.ttl(f"{prefix}intake:number:{logic.complaint_number(T0, 7)}")
            assert 0 < ttl <= NUMBER_TTL_SECONDS
            return [a.complaint_id for batch in batches for a in batch]  # type: ignore[union-attr]
        finally:
            await client.aclose()

    numbers = asyncio.run(scenario())
    # And all 40 complaints have numbers of their own
    assert len(numbers) == 40 and len(set(numbers)) == 40


@pytest.mark.parametrize("backend", ["fake", pytest.param("redis", marks=pytest.mark.integration)])
def test_reserving_numbers_keeps_faith_between_the_fake_and_redis(backend: str,
                                                                  request: pytest.FixtureRequest) -> None:
    async def scenario() -> list[list[bool]]:
        client, prefix = None, ""
        if backend == "redis":
            client = aioredis.from_url(request.getfixturevalue("redis_url"))
            prefix = f"{request.getfixturevalue('redis_prefix')}{uuid.uuid4().hex[:8]}:"
        regs: Registrations = DictRegistrations() if client is None else RedisRegistrations(client, prefix=prefix)
        try:
            # a number repeated in one call is reserved once; a later call sees it taken
            return [await regs.reserve_numbers(["261123-A", "261123-B", "261123-A"]),
                    await regs.reserve_numbers(["261123-B", "261123-C"]), await regs.reserve_numbers([])]
        finally:
            if client is not None:
                await client.aclose()

    assert asyncio.run(scenario()) == [[True, True, False], [False, True], []]

