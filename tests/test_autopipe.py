"""The services' auto-pipelining Redis client against a real server: commands issued at once go
as one pipeline, each caller gets the reply (or the error) the plain client would have given it,
scripts load on first use, a connection's failure reaches every caller, a cancelled caller's
command is not sent; REDIS_AUTO_PIPELINE chooses the client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from services.common.autopipe import AutoPipelineRedis
from services.common.errors import is_transient
from services.common.runtime import redis_client
from services.common.settings import CommonSettings
from tests.harness import free_port

pytestmark = pytest.mark.integration


def run(redis_url: str, scenario: Callable[[AutoPipelineRedis, aioredis.Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        auto, plain = AutoPipelineRedis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
        try:
            await scenario(auto, plain)
        finally:
            await auto.aclose()
            await plain.aclose()

    asyncio.run(main())


def test_commands_issued_at_once_go_as_one_pipeline_each_caller_its_own_reply(
        redis_url: str, redis_prefix: str) -> None:
    p = f"{redis_prefix}ap-{uuid.uuid4().hex[:6]}:"

    async def scenario(auto: AutoPipelineRedis, plain: aioredis.Redis) -> None:
        await plain.hset(f"{p}h", mapping={"a": "1", "b": "2"})
        await plain.set(f"{p}s", "x")
        await plain.zadd(f"{p}z", {"m": 3.5})

        def commands(r: aioredis.Redis) -> list[Awaitable[Any]]:
            return [r.hgetall(f"{p}h"), r.get(f"{p}s"), r.get(f"{p}missing"), r.exists(f"{p}s", f"{p}h"),
                    r.zrange(f"{p}z", 0, -1, withscores=True), r.hget(f"{p}h", "a"), r.ttl(f"{p}s"),
                    r.smembers(f"{p}none"), r.ping()]

        # Given nine reads of different kinds, When each is issued at once by its own coroutine
        expected = [await c for c in commands(plain)]
        got = await asyncio.gather(*commands(auto))
        # Then each got what the plain client answers, its reply decoded alike
        assert got == expected
        assert got[0] == {b"a": b"1", b"b": b"2"} and got[4] == [(b"m", 3.5)] and got[8] is True
        # and all went to the server as one pipeline
        assert (auto.pipelines, auto.pipelined) == (1, 9)
        # and writes issued at once land in the order issued
        await asyncio.gather(*(auto.rpush(f"{p}l", n) for n in range(50)))
        assert await plain.lrange(f"{p}l", 0, -1) == [str(n).encode() for n in range(50)]
        assert (auto.pipelines, auto.pipelined) == (2, 59)

    run(redis_url, scenario)


def test_a_commands_error_reaches_its_caller_only(redis_url: str, redis_prefix: str) -> None:
    p = f"{redis_prefix}ap-{uuid.uuid4().hex[:6]}:"

    async def scenario(auto: AutoPipelineRedis, plain: aioredis.Redis) -> None:
        # Given a string key, When a hash command on it is issued along with others
        await plain.set(f"{p}s", "x")
        results = await asyncio.gather(auto.incr(f"{p}n"), auto.hincrby(f"{p}s", "f", 1), auto.incr(f"{p}n"),
                                       return_exceptions=True)
        # Then that caller gets the server's error, and the others their replies
        assert results[0] == 1 and results[2] == 2
        assert isinstance(results[1], ResponseError) and "WRONGTYPE" in str(results[1])
        assert auto.pipelines == 1

    run(redis_url, scenario)


def test_a_script_not_yet_on_the_server_is_loaded_and_run_for_every_caller(redis_url: str,
                                                                          redis_prefix: str) -> None:
    p = f"{redis_prefix}ap-{uuid.uuid4().hex[:6]}:"

    async def scenario(auto: AutoPipelineRedis, plain: aioredis.Redis) -> None:
        # Given a script the server has never seen (its text is new), called at once by twenty callers
        script = auto.register_script(f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
        results = await asyncio.gather(*(script(keys=[f"{p}n"], args=[2]) for _ in range(20)))
        # Then each ran once (NOSCRIPT answered in the pipeline, the script loaded, run again)
        assert sorted(results) == list(range(2, 41, 2))
        assert int(await plain.get(f"{p}n")) == 40

    run(redis_url, scenario)


def test_a_connection_failure_reaches_every_caller_as_a_transient_error() -> None:
    async def main() -> None:
        # Given no server at the address
        auto = AutoPipelineRedis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
        try:
            # When three commands are issued at once
            results = await asyncio.gather(auto.get("a"), auto.set("b", 1), auto.ping(), return_exceptions=True)
        finally:
            await auto.aclose()
        # Then each caller gets the connection error, which the boundary waits out (never dead-letters)
        assert all(isinstance(r, RedisConnectionError) and is_transient(r) for r in results), results

    asyncio.run(main())


def test_a_caller_cancelled_before_the_send_sends_nothing(redis_url: str, redis_prefix: str) -> None:
    p = f"{redis_prefix}ap-{uuid.uuid4().hex[:6]}:"

    async def scenario(auto: AutoPipelineRedis, plain: aioredis.Redis) -> None:
        # Given two increments issued in one turn, When one caller is cancelled before the send
        # (the loop runs its callbacks in order: both callers queue, the cancel, then the send the
        # first caller scheduled)
        cancelled = asyncio.ensure_future(auto.incr(f"{p}gone"))
        kept = asyncio.ensure_future(auto.incr(f"{p}kept"))
        asyncio.get_running_loop().call_soon(cancelled.cancel)
        assert await kept == 1
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        # Then its command never reached the server, and the other's did
        assert await plain.get(f"{p}gone") is None and await plain.get(f"{p}kept") == b"1"

    run(redis_url, scenario)


def test_explicit_transactions_are_untouched(redis_url: str, redis_prefix: str) -> None:
    p = f"{redis_prefix}ap-{uuid.uuid4().hex[:6]}:"

    async def scenario(auto: AutoPipelineRedis, plain: aioredis.Redis) -> None:
        async with auto.pipeline(transaction=True) as tx:
            tx.incr(f"{p}t").incr(f"{p}t")
            assert await tx.execute() == [1, 2]
        assert auto.pipelines == 0  # the transaction is no auto pipeline

    run(redis_url, scenario)


def test_the_setting_chooses_the_client() -> None:
    assert isinstance(redis_client(CommonSettings()), AutoPipelineRedis)
    plain = redis_client(CommonSettings(REDIS_AUTO_PIPELINE=False))  # type: ignore[call-arg]
    assert type(plain) is aioredis.Redis
