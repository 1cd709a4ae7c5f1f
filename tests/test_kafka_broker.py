"""Apache Kafka without Docker (tools/kafka_broker) and `complaints up --broker kafka`.

The integration tests fetch the broker's jars with Maven once (cached, see ensure_jars) and run
a real Apache Kafka node; a machine without Java or Maven fails them with the install hint.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.harness import STAFF_SECRET, TEST_SECRET, free_port, http, post_inbound, staff_headers, wait_for
from tests.test_embedded_up import Output
from tools.kafka_broker import BrokerError, KafkaBroker, ensure_jars

UP_TIMEOUT = 300.0  # the first run may fetch the jars; a JVM on a busy 2-core box
STOP_TIMEOUT = 90.0
SERVICE_PORTS = ("INTAKE_HTTP_PORT", "ROUTER_HTTP_PORT", "SLA_MONITOR_HTTP_PORT",
                 "NOTIFIER_HTTP_PORT", "ARCHIVE_HTTP_PORT", "DESK_HTTP_PORT")


# -- without a server -------------------------------------------------------------------------

def test_a_single_dev_node_is_configured_for_our_topics(tmp_path: Path) -> None:
    # Given a node on port 9999 with its controller on 9998 and one setting of the caller's
    node = KafkaBroker(tmp_path, 9999, controller_port=9998, extra_properties={"num.io.threads": "2"})
    # When its properties are made
    props = node.properties(9998)
    # Then it is broker and controller in one, listens on loopback, keeps its data in log_dir,
    # forms groups at once, creates no topic by itself, and the caller's setting wins
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9999,CONTROLLER://127.0.0.1:9998"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9999"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9998"
    assert props["log.dirs"] == str((tmp_path / "data").resolve())
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["num.io.threads"] == "2"
    assert node.bootstrap == "127.0.0.1:9999"


def test_custom_listeners_keep_the_controller_and_name_the_inter_broker_one(tmp_path: Path) -> None:
    node = KafkaBroker(tmp_path, 9093, listeners="SASL_PLAINTEXT://127.0.0.1:9093,PLAINTEXT://127.0.0.1:9094")
    props = node.properties(9995)
    assert props["listeners"].endswith(",CONTROLLER://127.0.0.1:9995")
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert "CONTROLLER:PLAINTEXT" in props["listener.security.protocol.map"]


def _without_java_or_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("COMPLAINTS_KAFKA_CACHE", str(tmp_path / "cache"))
    return dict(os.environ)


def test_without_java_the_error_names_it_and_how_to_install(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _without_java_or_maven(tmp_path, monkeypatch)
    with pytest.raises(BrokerError, match=r"no `java` is on PATH.*apt-get install openjdk-17-jre-headless maven"):
        ensure_jars()


def test_without_maven_the_error_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_java_or_maven(tmp_path, monkeypatch)
    java = tmp_path / "bin" / "java"  # a java, but no mvn
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    with pytest.raises(BrokerError, match=r"no `mvn` is on PATH.*apt-get install"):
        ensure_jars()


def test_up_with_kafka_but_no_java_stops_with_the_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _without_java_or_maven(tmp_path, monkeypatch)
    env.update(KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", COMPLAINTS_DATA_DIR=str(tmp_path / "data"),
               **{name: str(free_port()) for name in SERVICE_PORTS})
    done = subprocess.run([sys.executable, "-m", "tools.cli", "up", "--broker", "kafka"], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no `java` is on PATH" in done.stderr and "apt-get install" in done.stderr, done.stderr


def test_idempotent_producers_are_a_setting_that_picks_faust_s_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    import faust.transport.drivers as faust_transports

    from services.common.runtime import IdempotentTransport, TunedTransport, broker_urls
    from services.common.settings import CommonSettings, load_settings

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092,127.0.0.1:9093")
    monkeypatch.delenv("KAFKA_IDEMPOTENT_PRODUCER", raising=False)
    urls = broker_urls(load_settings(CommonSettings))
    assert urls == ["kafka-tuned://127.0.0.1:9092", "kafka-tuned://127.0.0.1:9093"]
    assert faust_transports.by_url(urls[0]) is TunedTransport
    monkeypatch.setenv("KAFKA_IDEMPOTENT_PRODUCER", "true")
    urls = broker_urls(load_settings(CommonSettings))
    assert urls == ["kafka-idempotent://127.0.0.1:9092", "kafka-idempotent://127.0.0.1:9093"]
    transport = faust_transports.by_url(urls[0])
    assert transport is IdempotentTransport
    settings = transport.Producer._settings_extra.__qualname__
    assert settings.startswith("IdempotentProducer")


@pytest.mark.parametrize("idempotent", ["false", "true"])
def test_the_fetch_wait_is_a_setting_that_reaches_the_consumer(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, idempotent: str) -> None:
    """faust builds its aiokafka consumer with a fixed 1.5 s fetch wait; KAFKA_FETCH_MAX_WAIT
    replaces it (on tansu that wait is the delay of every record at every hop)."""
    from services.common.runtime import make_app
    from services.common.settings import CommonSettings, load_settings

    async def fetch_wait_ms(name: str) -> int:
        app = make_app(name, load_settings(CommonSettings), web_port=free_port())
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()  # never started: closes its client
            thread.thread_loop.close()  # the consumer thread's loop, never run

    monkeypatch.setenv("KAFKA_IDEMPOTENT_PRODUCER", idempotent)
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT", "0.02")
    assert asyncio.run(fetch_wait_ms("fetch-wait-set")) == 20
    monkeypatch.delenv("KAFKA_FETCH_MAX_WAIT")
    assert asyncio.run(fetch_wait_ms("fetch-wait-default")) == 500


def test_the_tools_producers_follow_the_same_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.transport import kafka_python_producer_kwargs

    monkeypatch.delenv("KAFKA_IDEMPOTENT_PRODUCER", raising=False)
    assert "enable_idempotence" not in kafka_python_producer_kwargs()
    monkeypatch.setenv("KAFKA_IDEMPOTENT_PRODUCER", "true")
    assert kafka_python_producer_kwargs()["enable_idempotence"] is True


# -- a real Apache Kafka ----------------------------------------------------------------------

def _records(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        seen: list[bytes] = []

        def caught_up() -> bool:
            seen.extend(r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs)
            return all(consumer.position(tp) >= ends[tp] for tp in parts)

        wait_for(caught_up, timeout=30, what=f"{topic} read")
        return seen
    finally:
        consumer.close()


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_broker_keeps_its_records_across_a_stop_and_a_kill(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.kafka import ensure_topics
    from services.common.transport import kafka_python_producer_kwargs

    # Given a fresh node with our topics and two records written by an idempotent producer (the
    # tools' kind: kafka-python with KAFKA_IDEMPOTENT_PRODUCER on)
    monkeypatch.setenv("KAFKA_IDEMPOTENT_PRODUCER", "true")
    node = KafkaBroker(tmp_path / "kafka", free_port())
    node.start()
    try:
        assert "complaints.inbound" in ensure_topics([node.bootstrap])
        producer = KafkaProducer(bootstrap_servers=[node.bootstrap], acks="all", **kafka_python_producer_kwargs())
        assert producer.config["enable_idempotence"]
        for value in (b"first", b"second"):
            producer.send("complaints.inbound", value, key=b"k").get(timeout=30)
        producer.close()
        # When it is stopped cleanly and started again, then killed (SIGKILL) and started again
        node.stop()
        node.start()
        assert ensure_topics([node.bootstrap]) == []  # every topic is still there
        pid = node.pid
        node.kill()
        assert pid is not None
        node.start()
        # Then both records are still on the topic, once each
        assert sorted(_records(node.bootstrap, "complaints.inbound")) == [b"first", b"second"]
    finally:
        node.stop()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_up_with_kafka_keeps_a_complaint_across_a_restart(tmp_path: Path, redis_url: str) -> None:
    # Given `complaints up --broker kafka` on fixed ports, a data dir, and the session's Redis
    ports = {name: free_port() for name in SERVICE_PORTS}
    env = {**os.environ, **{name: str(port) for name, port in ports.items()},
           "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "REDIS_URL": redis_url,
           "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "DESK_JWT_SECRET": STAFF_SECRET,
           "INTAKE_SIGNING_SECRETS": json.dumps({"*": TEST_SECRET})}
    env.pop("KAFKA_REBALANCE_TIMEOUT", None)
    intake = f"http://127.0.0.1:{ports['INTAKE_HTTP_PORT']}"
    prefixes: list[str] = []
    running: list[tuple[subprocess.Popen[str], Output]] = []

    def run_up() -> tuple[subprocess.Popen[str], Output]:
        # each run a Redis prefix of its own: the second starts with none of the first's state,
        # as after a Redis that lost it, and must rebuild it from the topics
        prefixes.append(f"test-kafka-up-{uuid.uuid4().hex[:8]}:")
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "up", "--broker", "kafka"],
                                env={**env, "REDIS_PREFIX": prefixes[-1]}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = Output(proc)
        running.append((proc, output))
        wait_for(lambda: proc.poll() is not None or "all services healthy" in output.text(),
                 timeout=UP_TIMEOUT, what="complaints up to be healthy", interval=0.5)
        assert proc.poll() is None, f"complaints up exited ({proc.returncode}):\n{output.text()}"
        return proc, output

    def stop(proc: subprocess.Popen[str], output: Output) -> int:
        running.remove((proc, output))
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=STOP_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()  # its children die with it (PR_SET_PDEATHSIG)
                proc.wait()
            output.close(proc)

    def complaint(cid: str) -> tuple[int, object]:
        return http("GET", f"{intake}/v1/complaints/{cid}", headers=staff_headers())

    try:
        # When a complaint is posted and registered
        proc, output = run_up()
        assert "Apache Kafka, data in" in output.text(), output.text()
        status, body = post_inbound(intake, "web_form", {
            "description": "The kettle I bought leaks from the base after two days.",
            "email": f"li.na.{uuid.uuid4().hex[:8]}@example.com"})
        assert status == 202, body
        cid = str(body["complaint_id"])
        wait_for(lambda: complaint(cid)[0] == 200, timeout=60, what="the complaint to be readable")
        # And the stack is stopped (Ctrl-C) and started again on the same data dir
        assert stop(proc, output) == 0, output.text()
        proc, output = run_up()
        # Then the first complaint is read back
        status, state = wait_for(lambda: (r := complaint(cid))[0] == 200 and r, timeout=120,
                                 what="the complaint after the restart")
        assert isinstance(state, dict) and state.get("status"), state
        assert stop(proc, output) == 0, output.text()
    finally:
        for proc, output in list(running):  # a failed test must not leave the stack running
            stop(proc, output)
        with redis.Redis.from_url(redis_url) as client:  # only this test's own keys
            for prefix in prefixes:
                for key in client.scan_iter(match=f"{prefix}*"):
                    client.delete(key)
    # And the broker's data lives under the data dir
    assert (tmp_path / "data" / "kafka" / "data" / "meta.properties").is_file()


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    from tools.kafka_broker import _cluster_id

    # a Kafka Uuid (16 bytes, URL-safe base64 without padding) that the storage tool's argument
    # parser takes as a value: one starting with "-" it took for an option (one in 64 before)
    ids = [_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
