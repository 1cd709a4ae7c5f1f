"""Automatic pipelining for the services' asyncio Redis client.

A service handles the records of a batch at once (``services.common.consumer.Keyed``), so many
coroutines issue a Redis command in the same turn of the event loop: a registration's read, a
claim, a commit, each for fifty complaints. redis-py sends each on a connection of its own, one
round trip, two system calls and a pool checkout per command (redis-py has no automatic
pipelining: redis/redis-py#3767). ``AutoPipelineRedis`` collects the commands issued within one
turn of the loop and sends them as one non-transactional pipeline (as ioredis's
``enableAutoPipelining`` does), handing each caller its own reply or its own error.

What changes for the callers: nothing they could rely on before. A non-transactional pipeline
runs its commands in the order they were issued, as one connection would; commands issued at
once by different coroutines had no order between them before either. A command's error
(``ResponseError``, a script's ``NoScriptError``, which ``Script`` then loads) reaches its own
caller only; a connection error or timeout reaches every caller of that pipeline, as it would
have reached each of them alone. Explicit pipelines and transactions (``client.pipeline()``) are
untouched: they are another class on their own connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

Queued = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]

# commands that block or change the connection's state: never pipelined with others' commands
ALONE = frozenset({"BLPOP", "BRPOP", "BLMOVE", "BLMPOP", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX",
                   "BZMPOP", "XREAD", "XREADGROUP", "WAIT", "WAITAOF", "SUBSCRIBE", "PSUBSCRIBE",
                   "SSUBSCRIBE", "MONITOR", "SELECT", "AUTH", "HELLO", "CLIENT", "MULTI", "EXEC",
                   "DISCARD", "WATCH", "UNWATCH", "RESET", "QUIT", "SHUTDOWN"})


class AutoPipelineRedis(aioredis.Redis):
    """An asyncio Redis client whose commands issued in one turn of the event loop go to the
    server as one pipeline (``max_batch`` at most per pipeline)."""

    def __init__(self, *args: Any, max_batch: int = 1000, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued: list[Queued] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._max_batch = max_batch
        self.pipelines = self.pipelined = 0  # pipelines sent, commands sent in them (tests, figures)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).split(" ", 1)[0].upper()
        if self.single_connection_client or name in ALONE:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((args, options, future))
        return await future

    def _flush(self) -> None:
        """Send what the turn queued (a loop callback: the sending runs as tasks)."""
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), self._max_batch):
            task = asyncio.ensure_future(self._send(queued[start:start + self._max_batch]))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send(self, batch: list[Queued]) -> None:
        batch = [q for q in batch if not q[2].done()]  # a caller cancelled meanwhile: not sent
        if not batch:
            return
        replies: list[Any]
        try:
            if len(batch) == 1:  # alone: as the plain client sends it
                args, options, _ = batch[0]
                replies = [await super().execute_command(*args, **options)]  # type: ignore[no-untyped-call]
            else:
                pipe = self.pipeline(transaction=False)
                for args, options, _ in batch:
                    pipe.execute_command(*args, **options)
                replies = await pipe.execute(raise_on_error=False)  # (it gives its connection back)
                self.pipelines += 1
                self.pipelined += len(batch)
        except BaseException as exc:  # the connection's error (or the caller's own, alone): every caller's
            replies = [exc] * len(batch)
        for (_, _, future), reply in zip(batch, replies, strict=True):
            _resolve(future, reply)


def _resolve(future: asyncio.Future[Any], reply: Any) -> None:
    """Hand a caller its reply: a result, an error (a command's, or the connection's), a
    cancellation; nothing when the caller is gone."""
    if future.done():
        return
    if isinstance(reply, asyncio.CancelledError):
        future.cancel()
    elif isinstance(reply, BaseException):
        future.set_exception(reply)
    else:
        future.set_result(reply)
