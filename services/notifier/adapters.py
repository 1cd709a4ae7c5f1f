"""Redis stores and the file-outbox transport of the notifier."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import redis.asyncio as aioredis

from services.notifier.logic import CustomerRecord, Notification


class RedisCustomers:
    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int) -> None:
        self._r, self._p, self._ttl = client, f"{prefix}notifier:customer:", ttl_seconds

    async def save(self, record: CustomerRecord) -> None:
        await self._r.set(self._p + record.complaint_id, record.model_dump_json(), ex=self._ttl)

    async def get(self, complaint_id: str) -> CustomerRecord | None:
        raw = await self._r.get(self._p + complaint_id)
        return CustomerRecord.model_validate_json(raw) if raw else None


class RedisSentLog:
    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int) -> None:
        self._r, self._p, self._ttl = client, f"{prefix}notifier:sent:", ttl_seconds

    async def was_sent(self, notification_id: str) -> bool:
        return bool(await self._r.exists(self._p + notification_id))

    async def mark_sent(self, notification_id: str) -> None:
        await self._r.set(self._p + notification_id, "1", ex=self._ttl)


class FileOutbox:
    """The embedded default transport: one JSON file per notification, named by its id.

    Writing the same id twice replaces the file, so a repeated send is harmless.
    """

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def send(self, notification: Notification) -> None:
        await asyncio.to_thread(self._write, notification)

    def _write(self, notification: Notification) -> None:
        final = self.directory / f"{notification.notification_id}.json"
        tmp = final.with_suffix(".tmp")
        tmp.write_text(json.dumps(notification.model_dump(mode="json"), ensure_ascii=False, indent=2),
                       encoding="utf-8")
        os.replace(tmp, final)
