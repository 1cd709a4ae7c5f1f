"""The customers' data keys: on the compacted topic complaints.keys (the system of record), cached
wrapped in Redis (rebuildable from the topic), unwrapped in a small in-process LRU with a short TTL.

Redis keys (under REDIS_PREFIX):

    pii:keys:<subject>      hash kid -> the WrappedKey JSON (every data key of the customer)
    pii:current:<subject>   the kid new data is sealed under (SET NX: the first creator wins)
    pii:whole               present while the cache holds the whole topic; gone (Redis lost its
                            keys), the next miss rebuilds it from the topic
    pii:erasures            a counter `complaints erase-customer` increments: every process
                            checks it (at most once per PII_KEY_CHECK_INTERVAL) and drops its
                            in-memory keys when it moved
    pii:aliases:<subject>   set of the customer keys of the subject's other identifiers (the
                            e-mail beside the phone a customer is keyed on), each also recorded
                            in the subject's key record on the topic (``WrappedKey.aliases``)
    pii:alias-of:<alias>    set of the subjects an identifier leads to (the reverse)

A customer who gave a phone and an e-mail is keyed (and sealed) by the phone; the e-mail's
customer key is recorded as an alias, so `complaints erase-customer --email` finds them too.

Creating a customer's key is race-safe without a lock: a creator publishes its new wrapped key to
the topic (acknowledged), caches it, then claims ``current`` with SET NX; a loser uses the winner's
key. Both keys stay valid (ciphertexts name their kid) and both are erased together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from kafka import KafkaProducer

from schemas.envelope import derived_id
from schemas.events import Contact, DataKeyRecorded, WrappedKey
from schemas.topics import KEYS
from services.common import sealing
from services.common.kafka import read_records
from services.common.ports import Publisher
from services.common.redis_store import text
from services.common.sealing import MasterKeys
from services.common.transport import kafka_python_producer_kwargs

log = logging.getLogger(__name__)
SERVICE_SOURCE = "pii-keys"
KeyReader = Callable[[], dict[str, bytes | None]]


def record_key(subject: str, kid: str) -> str:
    return f"{subject}/{kid}"


def read_keys(bootstrap: list[str], *, idle: float = 5.0) -> dict[str, bytes | None]:
    """The keys topic's last value per record key (None: a tombstone), from start to end now."""
    return {rec.key.decode(): rec.value for rec in read_records(bootstrap, KEYS.name, idle=idle, strict=True)
            if rec.key is not None}


def live_keys(records: dict[str, bytes | None]) -> list[WrappedKey]:
    """The wrapped keys a read of the topic holds (tombstoned ones left out)."""
    out = []
    for value in records.values():
        if value is None:
            continue
        record = _key_record(value)
        if record is None:
            log.warning("%s: a record that is no data key, skipped", KEYS.name)
        else:
            out.append(record)
    return out


def tombstone(bootstrap: list[str], keys: Iterable[str]) -> int:
    """Publish a tombstone for each record key (acknowledged by the broker); how many."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **kafka_python_producer_kwargs())
    try:
        futures = [producer.send(KEYS.name, key=k.encode(), value=None) for k in keys]
        for f in futures:
            f.get(timeout=30)
        return len(futures)
    finally:
        producer.close()


class KeyStore:
    """Data keys per customer for sealing (``current``) and opening (``data_key``)."""

    def __init__(self, redis: aioredis.Redis, *, prefix: str, masters: MasterKeys,
                 publisher: Publisher | None, read: KeyReader | None, ttl: float = 60.0,
                 size: int = 10_000, check_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._r, self._p = redis, f"{prefix}pii:"
        self.masters, self.publisher, self.read = masters, publisher, read
        self.ttl, self.size, self.check_interval, self.clock = ttl, size, check_interval, clock
        self._lru: OrderedDict[tuple[str, str], tuple[float, bytes | None]] = OrderedDict()
        self._current: dict[str, str] = {}
        self._seen_erasures: Any = None
        self._checked = float("-inf")
        self._rebuild = asyncio.Lock()
        self._linked: set[tuple[str, str]] = set()  # (subject, alias) known recorded

    # ---- in-process cache ------------------------------------------------------------------

    async def _fresh(self) -> None:
        """Drop every in-memory key when an erasure happened since the last look."""
        now = self.clock()
        if now - self._checked < self.check_interval:
            return
        self._checked = now
        seen = await self._r.get(self._p + "erasures")
        if seen != self._seen_erasures:
            self._lru.clear()
            self._current.clear()
            self._linked.clear()
            self._seen_erasures = seen

    def _get(self, subject: str, kid: str) -> tuple[bool, bytes | None]:
        hit = self._lru.get((subject, kid))
        if hit is None or self.clock() - hit[0] > self.ttl:
            return False, None
        self._lru.move_to_end((subject, kid))
        return True, hit[1]

    def _put(self, subject: str, kid: str, dek: bytes | None) -> None:
        self._lru[(subject, kid)] = (self.clock(), dek)
        self._lru.move_to_end((subject, kid))
        while len(self._lru) > self.size:
            self._lru.popitem(last=False)

    def forget(self, subject: str | None = None) -> None:
        """Drop in-memory keys (of one subject, or all)."""
        for k in [k for k in self._lru if subject is None or k[0] == subject]:
            del self._lru[k]
        if subject is None:
            self._current.clear()
        else:
            self._current.pop(subject, None)

    # ---- sealing ---------------------------------------------------------------------------

    async def current(self, subject: str) -> tuple[str, bytes]:
        """(kid, DEK) to seal ``subject``'s new data with; created (and recorded) when none exists."""
        await self._fresh()
        kid = self._current.get(subject)
        if kid is not None:
            found, dek = self._get(subject, kid)
            if found and dek is not None:
                return kid, dek
        raw = await self._r.get(self._p + "current:" + subject)
        if raw is not None:
            kid = text(raw)
            dek = await self.data_key(subject, kid)
            if dek is not None:
                self._current[subject] = kid
                return kid, dek
        if self.publisher is None:
            raise RuntimeError("this key store only opens: it has no publisher to record new keys")
        record, dek = sealing.new_data_key(self.masters, subject, now=datetime.now(UTC))
        # the system of record first: no ciphertext exists under a key the topic does not hold
        await self.publisher.publish(KEYS, DataKeyRecorded.new(
            record, id=record_key(subject, record.kid), source=SERVICE_SOURCE, time=record.created_at,
            subject=record_key(subject, record.kid)))
        await self._r.hset(self._p + "keys:" + subject, record.kid, record.model_dump_json())
        if await self._r.set(self._p + "current:" + subject, record.kid, nx=True):
            kid = record.kid
        else:  # another instance created one at the same time: use the winner's (ours stays valid)
            won = await self._r.get(self._p + "current:" + subject)
            kid = text(won) if won is not None else record.kid
        self._put(subject, record.kid, dek)
        if kid != record.kid:
            other = await self.data_key(subject, kid)
            if other is None:
                kid = record.kid
            else:
                dek = other
        self._current[subject] = kid
        return kid, dek

    async def link(self, subject: str, aliases: Iterable[str]) -> int:
        """Record that ``aliases`` (customer keys of the customer's other identifiers) lead to
        ``subject``; how many were new. The subject's current key record is published again
        with every alias (the topic is the system of record; compaction keeps the last), then
        Redis learns them both ways. A crash in between publishes again next time."""
        await self._fresh()
        wanted = sorted({a for a in aliases if a and a != subject and (subject, a) not in self._linked})
        if not wanted:
            return 0
        known = await self._r.smismember(self._p + "aliases:" + subject, wanted)
        fresh = [a for a, k in zip(wanted, known, strict=True) if not k]
        self._linked.update((subject, a) for a in wanted if a not in fresh)
        if not fresh:
            return 0
        if self.publisher is None:
            raise RuntimeError("this key store only opens: it has no publisher to record aliases")
        kid, _ = await self.current(subject)
        raw = await self._r.hget(self._p + "keys:" + subject, kid)
        if raw is None:
            raise RuntimeError("the current data key is not cached")  # current() just cached it
        record = WrappedKey.model_validate_json(raw)
        every = {text(m) for m in await self._r.smembers(self._p + "aliases:" + subject)}
        record = record.model_copy(update={"aliases": sorted({*record.aliases, *every, *fresh})})
        name = record_key(subject, kid)
        await self.publisher.publish(KEYS, DataKeyRecorded.new(
            record, id=derived_id("datakey-aliases", name, *record.aliases), source=SERVICE_SOURCE,
            time=datetime.now(UTC), subject=name))
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hset(self._p + "keys:" + subject, kid, record.model_dump_json())
            pipe.sadd(self._p + "aliases:" + subject, *fresh)
            for a in fresh:
                pipe.sadd(self._p + "alias-of:" + a, subject)
            await pipe.execute()
        self._linked.update((subject, a) for a in fresh)
        return len(fresh)

    async def seal(self, contact: Contact, *, subject: str, account: str | None = None) -> Contact:
        """The contact sealed under the subject's current data key (``account``: a WeChat openid)."""
        if contact.sealed is not None or not (contact.name or contact.phone or contact.email or account):
            return contact
        kid, dek = await self.current(subject)
        return sealing.seal_contact(contact, subject=subject, kid=kid, dek=dek, account=account)

    # ---- opening ---------------------------------------------------------------------------

    async def data_key(self, subject: str, kid: str) -> bytes | None:
        """The DEK ``kid`` of ``subject``; None when it was erased (or never existed)."""
        await self._fresh()
        found, dek = self._get(subject, kid)
        if found:
            return dek
        raw = await self._r.hget(self._p + "keys:" + subject, kid)
        if raw is None and not await self._r.exists(self._p + "whole"):
            await self.rebuild()
            raw = await self._r.hget(self._p + "keys:" + subject, kid)
        dek = None if raw is None else sealing.unwrap(self.masters, WrappedKey.model_validate_json(raw))
        self._put(subject, kid, dek)
        return dek

    async def open(self, contact: Contact) -> Contact:
        """The contact in clear; ``sealing.Erased`` when its customer's key was erased."""
        s = contact.sealed
        if s is None:
            return contact
        deks: dict[str, bytes] = {}
        for kid in sealing.kids_of(contact):
            dek = await self.data_key(s.subject, kid)
            if dek is not None:
                deks[kid] = dek
        return sealing.open_contact(contact, deks)

    # ---- the Redis cache -------------------------------------------------------------------

    async def rebuild(self) -> int:
        """Refill the Redis cache from the keys topic (tombstoned keys are left out); how many."""
        if self.read is None:
            raise RuntimeError("no reader of the keys topic to rebuild the cache from")
        async with self._rebuild:
            if await self._r.exists(self._p + "whole"):
                return 0
            while True:
                before = await self._r.get(self._p + "erasures")
                keys = live_keys(await asyncio.to_thread(self.read))
                async with self._r.pipeline(transaction=False) as pipe:
                    for k in keys:
                        pipe.hset(self._p + "keys:" + k.subject, k.kid, k.model_dump_json())
                        if k.aliases:
                            pipe.sadd(self._p + "aliases:" + k.subject, *k.aliases)
                        for a in k.aliases:
                            pipe.sadd(self._p + "alias-of:" + a, k.subject)
                    await pipe.execute()
                if await self._r.get(self._p + "erasures") == before:
                    break  # an erasure meanwhile may have been undone by this refill: again
                log.warning("an erasure ran during the key cache rebuild: reading the topic again")
            await self._r.set(self._p + "whole", b"1")
            log.warning("data key cache rebuilt from %s: %d keys", KEYS.name, len(keys))
            return len(keys)

    async def mark_whole_if_empty(self) -> None:
        """A deployment's first start (nothing cached, nothing to rebuild): set the marker lazily."""
        await self._r.set(self._p + "whole", b"1", nx=True)


async def erase(redis: aioredis.Redis, *, prefix: str, subject: str, bootstrap: list[str],
                read: KeyReader | None = None, tomb: Callable[[list[str]], int] | None = None,
                ) -> dict[str, int]:
    """Erase one customer's data keys everywhere: tombstones on the topic, the Redis cache entries,
    and the erasure counter every process watches. Idempotent. Counts, no personal data.

    ``subject`` is the customer key of any identifier of theirs: every customer key linked to
    it by an alias (``KeyStore.link``: the e-mail given beside a phone), on the topic or in
    Redis, is erased with it, and so on transitively (the phone's key, then an e-mail-only
    complaint's key of the same e-mail)."""
    p = f"{prefix}pii:"
    topic = await asyncio.to_thread(read or (lambda: read_keys(bootstrap)))
    records = {k: r for k, r in ((k, _key_record(v)) for k, v in topic.items() if v is not None) if r}
    subjects = await _linked_subjects(redis, p, subject, records.values())
    on_topic = sorted(k for k, r in records.items() if r.subject in subjects)
    cached = [record_key(s, text(kid)) for s in sorted(subjects)
              for kid in await redis.hkeys(p + "keys:" + s)]
    names = sorted({*on_topic, *cached})
    tombstoned = await asyncio.to_thread(tomb or (lambda ks: tombstone(bootstrap, ks)), names) if names else 0
    aliases = {text(a) for s in subjects for a in await redis.smembers(p + "aliases:" + s)}
    doomed = [key for s in subjects for key in (p + "keys:" + s, p + "current:" + s, p + "aliases:" + s)]
    deleted = int(await redis.delete(*doomed, *(p + "alias-of:" + a for a in sorted(aliases | subjects))))
    await redis.incr(p + "erasures")
    return {"keys_on_topic": len(on_topic), "keys_cached": len(cached), "tombstoned": tombstoned,
            "redis_keys_deleted": deleted, "linked_customers": len(subjects - {subject})}


def _key_record(value: bytes) -> WrappedKey | None:
    try:
        return DataKeyRecorded.model_validate_json(value).data
    except ValueError:
        return None


async def _linked_subjects(redis: aioredis.Redis, p: str, subject: str, records: Iterable[WrappedKey],
                           ) -> set[str]:
    """``subject`` and every subject an alias links to it, transitively (topic and Redis)."""
    records = list(records)
    identities, subjects = {subject}, {subject}
    while True:
        before = (len(identities), len(subjects))
        for r in records:
            if r.subject in identities or identities.intersection(r.aliases):
                subjects.add(r.subject)
                identities.update((r.subject, *r.aliases))
        for ident in sorted(identities):
            subjects.update(text(s) for s in await redis.smembers(p + "alias-of:" + ident))
            identities.update(text(a) for a in await redis.smembers(p + "aliases:" + ident))
        identities |= subjects
        if (len(identities), len(subjects)) == before:
            return subjects
