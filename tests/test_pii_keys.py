"""The data key store on a real Redis: aliases recorded with the key, and an erasure that finds a
customer by any identifier they gave (docs/privacy.md). The topic is a dict of record key ->
value that keeps the last value per key, as compaction does; the broker path is in
test_privacy_e2e."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from schemas.events import DataKeyRecorded
from services.common import sealing
from services.common.pii_keys import KeyStore, erase, record_key
from tests.conftest import PII_MASTER_KEYS
from tests.fakes import RecordingPublisher

pytestmark = pytest.mark.integration

PHONE_KEY, EMAIL_KEY, OTHER_KEY = "p" * 32, "e" * 32, "o" * 32


class Topic:
    """complaints.keys as a compacted topic: the last value per record key (None: a tombstone)."""

    def __init__(self, publisher: RecordingPublisher) -> None:
        self.publisher, self.tombstones = publisher, set[str]()

    def read(self) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for _, event in self.publisher.published:
            out[str(event.subject)] = event.to_bytes()
        for name in self.tombstones:
            out[name] = None
        return out

    def tomb(self, names: list[str]) -> int:
        self.tombstones.update(names)
        return len(names)


def run(redis_url: str, body: Callable[[aioredis.Redis, str, KeyStore, Topic], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        client = aioredis.Redis.from_url(redis_url)
        prefix = f"pii-test-{uuid.uuid4().hex[:8]}:"
        publisher = RecordingPublisher()
        topic = Topic(publisher)
        store = KeyStore(client, prefix=prefix, masters=sealing.master_keys(PII_MASTER_KEYS, Path("/nonexistent")),
                         publisher=publisher, read=topic.read, check_interval=0.0)  # sees erasures at once
        try:
            return await body(client, prefix, store, topic)
        finally:
            async for key in client.scan_iter(match=f"{prefix}*"):
                await client.delete(key)
            await client.aclose()

    return asyncio.run(go())


def test_an_alias_is_recorded_on_the_key_record_once(redis_url: str) -> None:
    async def body(client: aioredis.Redis, prefix: str, store: KeyStore, topic: Topic) -> None:
        # Given a customer keyed by the phone
        kid, _ = await store.current(PHONE_KEY)
        # When their e-mail's key is linked, twice (a second complaint)
        assert await store.link(PHONE_KEY, [EMAIL_KEY]) == 1
        assert await store.link(PHONE_KEY, [EMAIL_KEY, PHONE_KEY]) == 0
        # Then the key record on the topic names the alias (same record key: compaction keeps it)
        records = [e for _, e in topic.publisher.published if isinstance(e, DataKeyRecorded)]
        assert [e.subject for e in records] == [record_key(PHONE_KEY, kid)] * 2
        assert records[-1].data.aliases == [EMAIL_KEY] and records[-1].data.wrapped == records[0].data.wrapped
        # and Redis knows it both ways, so another process does not publish it again
        assert await client.smembers(f"{prefix}pii:alias-of:{EMAIL_KEY}") == {PHONE_KEY.encode()}
        fresh = KeyStore(client, prefix=prefix, masters=store.masters, publisher=topic.publisher, read=topic.read)
        assert await fresh.link(PHONE_KEY, [EMAIL_KEY]) == 0
        assert len(topic.publisher.published) == 2

    run(redis_url, body)


def test_erasing_by_the_email_erases_the_customer_keyed_by_the_phone(redis_url: str) -> None:
    async def body(client: aioredis.Redis, prefix: str, store: KeyStore, topic: Topic) -> None:
        # Given a customer keyed by the phone who also gave an e-mail, and someone else
        kid, _ = await store.current(PHONE_KEY)
        await store.link(PHONE_KEY, [EMAIL_KEY])
        other, _ = await store.current(OTHER_KEY)
        # When they are erased by the e-mail's key
        done = await erase(client, prefix=prefix, subject=EMAIL_KEY, bootstrap=[], read=topic.read,
                           tomb=topic.tomb)
        # Then the phone's data key is tombstoned and gone from Redis; the other customer's stays
        assert topic.tombstones == {record_key(PHONE_KEY, kid)}
        assert done["tombstoned"] == 1 and done["linked_customers"] == 1
        assert await store.data_key(PHONE_KEY, kid) is None
        assert await store.data_key(OTHER_KEY, other) is not None
        assert not await client.exists(f"{prefix}pii:alias-of:{EMAIL_KEY}", f"{prefix}pii:aliases:{PHONE_KEY}")

    run(redis_url, body)


def test_an_erasure_follows_the_links_transitively_from_the_topic_alone(redis_url: str) -> None:
    async def body(client: aioredis.Redis, prefix: str, store: KeyStore, topic: Topic) -> None:
        # Given an e-mail-only complaint (keyed by the e-mail), then one with the phone and that e-mail
        by_email, _ = await store.current(EMAIL_KEY)
        by_phone, _ = await store.current(PHONE_KEY)
        await store.link(PHONE_KEY, [EMAIL_KEY])
        # And Redis lost everything (only the topic is left)
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        # When the customer is erased by the phone
        done = await erase(client, prefix=prefix, subject=PHONE_KEY, bootstrap=[], read=topic.read,
                           tomb=topic.tomb)
        # Then both data keys are tombstoned: the phone's, and the e-mail-only complaint's
        assert topic.tombstones == {record_key(PHONE_KEY, by_phone), record_key(EMAIL_KEY, by_email)}
        assert done["linked_customers"] == 1
        # and a rebuilt cache opens neither
        assert await store.data_key(PHONE_KEY, by_phone) is None
        assert await store.data_key(EMAIL_KEY, by_email) is None

    run(redis_url, body)


def test_a_rebuild_from_the_topic_restores_the_aliases(redis_url: str) -> None:
    async def body(client: aioredis.Redis, prefix: str, store: KeyStore, topic: Topic) -> None:
        await store.current(PHONE_KEY)
        await store.link(PHONE_KEY, [EMAIL_KEY])
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        assert await store.rebuild() == 1
        assert await client.smembers(f"{prefix}pii:aliases:{PHONE_KEY}") == {EMAIL_KEY.encode()}
        assert await client.smembers(f"{prefix}pii:alias-of:{EMAIL_KEY}") == {PHONE_KEY.encode()}

    run(redis_url, body)
