"""A fuzz campaign per channel through the running intake: HTTP (signed POSTs) and Kafka.

200 generated payloads per channel and path (``tools.fuzz``: mutated examples, wrong types,
missing fields, huge strings, odd unicode, arbitrary bytes, nesting, bad Content-Types). Each
must be registered, recorded (a survey reply) or dead-lettered by intake with a classified
reason, or (HTTP) answered with a 4xx problem document; no 5xx, nothing missing, and intake
answers /healthz afterwards. `complaints fuzz --channel all --count 10000` is the large run.
"""

from __future__ import annotations

import os

import pytest

from tests.harness import TEST_SECRET, Service
from tools.fuzz.generate import CHANNELS
from tools.fuzz.run import campaign

pytestmark = pytest.mark.integration

COUNT = int(os.environ.get("COMPLAINTS_FUZZ_COUNT", "200"))  # the large run: 10000


@pytest.mark.timeout(max(420, 2 * COUNT))  # about 40 payloads/s on the loaded 2-core machine
def test_every_fuzzed_payload_is_registered_dead_lettered_or_a_4xx(broker: str, intake_url: str,
                                                                   stack: dict[str, Service]) -> None:
    # Given the running stack; when every channel gets COUNT hostile payloads over HTTP and Kafka
    report = campaign(CHANNELS, COUNT, intake_url=intake_url, bootstrap=[broker],
                      secrets={"*": TEST_SECRET.encode()}, seed=20261203, timeout=max(240, COUNT / 2))
    text = report.text()
    print(text)  # the figures (pytest -s shows them)
    # Then each has its outcome: no 5xx, no unexpected dead letter, nothing missing
    assert report.ok, text
    assert all(t.sent == COUNT for t in report.tallies), text
    # and the campaign reached every outcome: registrations, dead letters and 4xx answers
    assert all(t.registered > 0 for t in report.tallies if t.channel != "survey_reply"), text
    assert all(sum(t.dead_lettered.values()) > 0 for t in report.tallies if t.via == "kafka"), text
    assert all(sum(t.client_errors.values()) > 0 for t in report.tallies if t.via == "http"), text
    # and intake stayed up
    assert report.healthy and stack["intake"].proc.poll() is None, text
