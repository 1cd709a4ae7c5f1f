"""Redis stores, the file-outbox transport, and the transports the settings configure."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import redis.asyncio as aioredis

from services.common.redis_store import LeasedSchedule, Rebuildable, text
from services.notifier import logic
from services.notifier.logic import Queued
from services.notifier.messages import CustomerRecord, Notification
from services.notifier.ports import Transport
from services.notifier.replies import CallbackQueue, PlatformReplyTransport, WeChatTransport
from services.notifier.settings import NotifierSettings
from services.notifier.transports import HttpTransport, SmtpTransport


class RedisCustomers:
    """Contacts as JSON strings, the scheduled revisits of a complaint in a hash; both expire."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int) -> None:
        self._r, self._p, self._ttl = client, f"{prefix}notifier:customer:", ttl_seconds

    async def save(self, record: CustomerRecord) -> None:
        await self._r.set(self._p + record.complaint_id, record.model_dump_json(), ex=self._ttl)

    async def get(self, complaint_id: str) -> CustomerRecord | None:
        raw = await self._r.get(self._p + complaint_id)
        return CustomerRecord.model_validate_json(raw) if raw else None

    async def remember_revisit(self, complaint_id: str, notification_id: str, queue: str) -> None:
        key = f"{self._p}{complaint_id}:revisits"
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hset(key, notification_id, queue)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def revisits(self, complaint_id: str) -> dict[str, str]:
        """Scheduled revisits of the complaint: notification id -> queue."""
        raw = await self._r.hgetall(f"{self._p}{complaint_id}:revisits")
        return {text(k): text(v) for k, v in raw.items()}


class FileOutbox:
    """The embedded default transport: one JSON file per notification, named by its id.

    Writing the same id twice replaces the file, so a repeated send is harmless (``idempotent``:
    one left in doubt is written again, never held). A local file is no server to spare: it takes
    NOTIFIER_OUTBOX_CONCURRENCY sends at once.
    """

    name = "outbox"
    idempotent = True

    def __init__(self, directory: Path, *, concurrency: int | None = None) -> None:
        self.directory, self.concurrency = directory, concurrency
        directory.mkdir(parents=True, exist_ok=True)

    async def send(self, notification: Notification) -> None:
        await asyncio.to_thread(self._write, notification)

    def _write(self, notification: Notification) -> None:
        final = self.directory / f"{notification.notification_id}.json"
        tmp = final.with_suffix(".tmp")
        tmp.write_text(json.dumps(notification.model_dump(mode="json"), ensure_ascii=False, indent=2),
                       encoding="utf-8")
        os.replace(tmp, final)


def transports_of(settings: NotifierSettings) -> dict[str, Transport]:
    """The file outbox, the call-back queue, plus every configured transport, by queue name."""
    out: dict[str, Transport] = {
        "outbox": FileOutbox(settings.outbox_dir, concurrency=settings.outbox_concurrency),
        logic.CALLBACK: CallbackQueue(),
    }
    if settings.smtp:
        out["smtp"] = SmtpTransport(settings.smtp)
    if settings.sms_gateway:
        out["sms-gateway"] = HttpTransport("sms-gateway", settings.sms_gateway, "sms")
    for role, chat in settings.chat.items():
        out[f"chat:{role}"] = HttpTransport(f"chat:{role}", chat, chat.kind)
    if settings.wechat:
        out[logic.WECHAT] = WeChatTransport(settings.wechat)
    for platform, config in settings.platforms.items():
        out[logic.platform_queue(platform)] = PlatformReplyTransport(platform, config)
    return out


# ---- customer messages per recipient and window ----------------------------------------

# KEYS: the recipient's set of the window; ARGV: id, limit, ttl. 1 when the id may go (counted
# now or before), 0 when the recipient had ``limit`` others in the window: logic.admit.
_ADMIT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


class RedisRecipientLimit:
    """Notification ids per recipient (a hash of the address: ``logic.recipient_key``) and fixed
    window, in a set that expires with its window; one Lua script checks and counts."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, limit: int, window: int) -> None:
        self._p, self.limit, self.window = f"{prefix}notifier:rate:", limit, window
        self._admit = client.register_script(_ADMIT)

    async def admit(self, recipient: str, notification_id: str, *, now: float) -> bool:
        """True when the notification may go to ``recipient`` (a key, never an address)."""
        key = f"{self._p}{recipient}:{logic.rate_window(now, window=self.window)}"
        return bool(await self._admit(keys=[key], args=[notification_id, self.limit, self.window + 60]))


# ---- the delivery queue (its states stated in Python: services.notifier.logic.step) ----

# KEYS: msg, queue; ARGV: notification json, due, ttl, meta json, queue name, id.
# Answers 'new', or the state of the notification already there (nothing changes).
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGET', KEYS[1], 'state') end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'state', 'queued', 'attempts', 0, 'meta', ARGV[4],
           'queue', ARGV[5])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[6])
return 'new'
"""

# KEYS: msg, queue, inflight; ARGV: id, outcome (sent|failed|retry|in_doubt), due (retry).
# An in-doubt notification that turns out sent (its slow sender finishes) becomes sent.
_SETTLE = """
local state = redis.call('HGET', KEYS[1], 'state')
redis.call('ZREM', KEYS[3], ARGV[1])
if not state or state == 'sent' or state == 'failed' or state == 'cancelled' then return state or 'gone' end
if state == 'in_doubt' and ARGV[2] ~= 'sent' then return state end
if ARGV[2] == 'retry' then
  redis.call('HSET', KEYS[1], 'state', 'queued')
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""

# KEYS: msg, inflight; ARGV: id, token, now, lease, in-doubt policy (resend|hold).
# One dispatcher at a time sends a message: its own claim may have overlapped another's (a
# batch that waited longer than the lease). A message still 'sending' under another owner's
# expired lease is in doubt (that owner died mid-send): it is resent ('resend') or held as
# 'in_doubt' ('doubt') by the policy.
_BEGIN = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'sent' or state == 'failed' or state == 'cancelled' or state == 'in_doubt' then
  return 'done'
end
local owner = redis.call('HGET', KEYS[1], 'owner')
local till = tonumber(redis.call('HGET', KEYS[1], 'owner_until') or '0')
if owner and owner ~= ARGV[2] and till > tonumber(ARGV[3]) then return 'busy' end
local verdict = 'go'
if state == 'sending' and owner ~= ARGV[2] then
  if ARGV[5] == 'hold' then
    redis.call('HSET', KEYS[1], 'state', 'in_doubt')
    redis.call('ZREM', KEYS[2], ARGV[1])
    return 'doubt'
  end
  verdict = 'resend'
end
local until_ = tonumber(ARGV[3]) + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'state', 'sending', 'owner', ARGV[2], 'owner_until', until_)
redis.call('ZADD', KEYS[2], until_, ARGV[1])
return verdict
"""

# KEYS: msg, queue; ARGV: id. Only a queued notification is withdrawn (its lease, if any, stays).
_CANCEL = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled')
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class RedisOutbox(Rebuildable):
    """Durable per-transport delivery queues: a hash per notification, due times in a sorted set.

    Enqueueing is idempotent on the notification id; a claimed notification is leased to one
    dispatcher; settling it (sent, failed, or back to the queue for a retry) is atomic.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int) -> None:
        self._r, self._p, self._ttl = client, f"{prefix}notifier:", ttl_seconds
        super().__init__(client, self._p)
        self._enqueue = client.register_script(_ENQUEUE)
        self._leases = LeasedSchedule(client)
        self._settle = client.register_script(_SETTLE)
        self._cancel = client.register_script(_CANCEL)
        self._begin = client.register_script(_BEGIN)

    def _msg(self, notification_id: str) -> str:
        return f"{self._p}msg:{notification_id}"

    def _queues(self, name: str) -> tuple[str, str]:
        return f"{self._p}queue:{name}", f"{self._p}inflight:{name}"

    async def enqueue(self, queue: str, note: Notification, *, due: float, meta: dict[str, str]) -> bool:
        """Queue a notification unless its id is known; True when it is new."""
        result = await self._enqueue(
            keys=[self._msg(note.notification_id), self._queues(queue)[0]],
            args=[note.model_dump_json(), due, self._ttl, json.dumps(meta), queue, note.notification_id])
        return text(result) == "new"

    async def claim(self, queue: str, *, now: float, limit: int, lease: float) -> list[Queued]:
        """Take up to ``limit`` due notifications (and those whose lease ran out)."""
        ids = await self._leases.claim(*self._queues(queue), now=now, limit=limit, lease=lease)
        if not ids:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(self._msg(i))
            rows = await pipe.execute()
        out = []
        for raw in rows:
            fields = {text(k): text(v) for k, v in raw.items()}
            if "n" in fields:
                out.append(Queued(Notification.model_validate_json(fields["n"]), fields.get("state", ""),
                                  int(fields.get("attempts", 0)), json.loads(fields.get("meta", "{}"))))
        return out

    async def settle(self, queue: str, notification_id: str, outcome: str, *, due: float = 0) -> str | int:
        """'sent', 'failed' or 'retry' (back in the queue at ``due``); the new attempt count.

        A notification settled already (or in doubt, unless now 'sent') keeps its state and that
        state is returned; 'gone' when it is unknown. The lease is dropped either way.
        """
        q, inflight = self._queues(queue)
        result = await self._settle(keys=[self._msg(notification_id), q, inflight],
                                    args=[notification_id, outcome, due])
        return result if isinstance(result, int) else text(result)

    async def begin(self, queue: str, notification_id: str, *, token: str, now: float, lease: float,
                    in_doubt: str = "resend") -> str:
        """'go' (send it now, leased to ``token``), 'resend' (go, though a sender died mid-send),
        'doubt' (a sender died mid-send and ``in_doubt`` is 'hold': now in_doubt, not sent),
        'busy' (another instance sends it) or 'done'."""
        result = await self._begin(keys=[self._msg(notification_id), self._queues(queue)[1]],
                                   args=[notification_id, token, now, lease, in_doubt])
        return text(result)

    async def release(self, queue: str, notification_id: str) -> None:
        """Drop a claim without changing the notification (it was settled meanwhile)."""
        await self._r.zrem(self._queues(queue)[1], notification_id)

    async def cancel(self, queue: str, notification_id: str) -> bool:
        """Withdraw a queued notification (a revisit after a reopen); False if it went already."""
        return bool(await self._cancel(keys=[self._msg(notification_id), self._queues(queue)[0]],
                                       args=[notification_id]))

    async def state(self, notification_id: str) -> str | None:
        """The notification's delivery state (``logic.Delivery``), None when unknown."""
        raw = await self._r.hget(self._msg(notification_id), "state")
        return text(raw) if raw is not None else None

    async def depth(self, queue: str) -> int:
        """Notifications waiting in a queue plus those claimed from it."""
        q, inflight = self._queues(queue)
        return int(await self._r.zcard(q)) + int(await self._r.zcard(inflight))
