"""HTTP answers while a dependency does not answer: 503 problem documents with Retry-After.

The intake channel under a Redis refusing writes is in tests/test_outage_redis.py; the
desk's mapping in tests/test_boundary_outages.py. Here the archive's report API, in process
(faust's web app under aiohttp's test client), against a database that is not there.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import faust
from aiohttp.test_utils import TestClient, TestServer

from services.archive.database import make_engine
from services.archive.reports.http import PATH, add_report_api
from services.common.policy import load_policy
from services.desk.auth import TokenVerifier, mint
from services.sla_monitor.calendar import load_calendar

SECRET = b"outage-test-staff-secret-of-32-chars!"


def test_the_report_api_asks_to_retry_while_the_database_is_down() -> None:
    # Given the report API over a database that does not answer
    dead = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    app = faust.App("report-outage-test", broker="kafka://127.0.0.1:1", store="memory://",
                    autodiscover=False, web_port=6067)
    add_report_api(app, engine=dead, policy=load_policy(), calendar=load_calendar(),
                   verifier=TokenVerifier(secret=SECRET), retry_after=9)
    token = mint(SECRET, sub="viewer", roles=["supervisor"], department=None,
                 ttl=timedelta(minutes=5), now=time.time())

    async def go() -> tuple[int, dict[str, str], dict[str, object]]:
        async with TestClient(TestServer(app.web.web_app)) as client:  # type: ignore[attr-defined]
            response = await client.get(f"{PATH}?month=2026-11",
                                        headers={"Authorization": f"Bearer {token}"})
            return response.status, dict(response.headers), json.loads(await response.text())

    # When a report is asked for, Then the answer is a 503 problem that says when to retry
    status, headers, body = asyncio.run(go())
    assert status == 503 and body["title"] == "Temporarily unavailable"
    assert headers["Content-Type"].startswith("application/problem+json")
    assert headers["Retry-After"] == "9"
