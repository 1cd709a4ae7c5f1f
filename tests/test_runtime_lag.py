"""The consumer-lag reading of /metrics (services.common.runtime.lag_of), on a faust app of ours."""

from __future__ import annotations

import asyncio

import pytest

from services.common.runtime import lag_of, make_app
from services.common.settings import CommonSettings, load_settings


def test_an_app_whose_consumer_never_started_has_no_lag_and_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a service app that reads no topic, so its consumer never starts (the desk)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    loop = asyncio.new_event_loop()  # the app takes the current loop: one of the test's own, closed after
    asyncio.set_event_loop(loop)
    try:
        app = make_app("lag-test", load_settings(CommonSettings), web_port=18099)  # never served
        # When its lag is read (every LAG_INTERVAL), then there is none to report, and nothing raises
        # (it raised ConsumerNotStarted, logged with its traceback every 5 s by the desk)
        assert lag_of(app.consumer) == {}
        app.consumer._thread.thread_loop.close()  # the consumer thread's loop, made and never run
    finally:
        asyncio.set_event_loop(None)
        loop.close()
