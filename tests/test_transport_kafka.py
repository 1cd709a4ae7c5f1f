"""Kafka over TLS and SASL against a real Apache Kafka (tools/kafka_broker; tansu has no TLS):
one node with an mTLS listener (SSL, ssl.client.auth=required), a SASL_SSL listener with
SCRAM-SHA-512 and a plaintext one on loopback for the broker itself and the test's set-up (the
SCRAM user is created through it, as an operator would with kafka-configs). Each client path of
the services -- faust (a service process), aiokafka (the archive's batch consumer) and
kafka-python (topics, rebuild readers, tools) -- connects with its settings from
services/common/transport.py; a wrong password, a missing client certificate or an untrusted
CA is refused. Needs Java and Maven (tools/kafka_broker fetches the jars once)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from schemas.envelope import Envelope
from schemas.topics import TopicSpec
from services.common.kafka import ensure_topics, read_topic
from services.common.settings import TransportSettings
from services.common.transport import aiokafka_kwargs, kafka_python_kwargs
from tests.harness import Service, free_port, registered_event, wait_for
from tests.tls import Pki, make_pki

pytestmark = pytest.mark.integration
USER = "complaints-svc"
PASSWORD = "scram-password-7a3f91c2"  # noqa: S105 - the test broker's SCRAM user


@dataclass(frozen=True)
class SecureKafka:
    plaintext: str  # the set-up's own listener (loopback)
    mtls: str
    sasl_ssl: str
    pki: Pki

    def env(self, protocol: str, **overrides: str) -> dict[str, str]:
        """The services' environment for ``protocol`` (SSL: mTLS; SASL_SSL: SCRAM-SHA-512)."""
        if protocol == "SSL":
            env = {"KAFKA_BOOTSTRAP_SERVERS": self.mtls, "KAFKA_SECURITY_PROTOCOL": "SSL",
                   "KAFKA_SSL_CAFILE": str(self.pki.ca), "KAFKA_SSL_CERTFILE": str(self.pki.client_cert),
                   "KAFKA_SSL_KEYFILE": str(self.pki.client_key)}
        else:
            env = {"KAFKA_BOOTSTRAP_SERVERS": self.sasl_ssl, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                   "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": USER,
                   "KAFKA_SASL_PASSWORD": PASSWORD, "KAFKA_SSL_CAFILE": str(self.pki.ca)}
        return {**env, **overrides}

    def settings(self, protocol: str, **overrides: str) -> TransportSettings:
        return TransportSettings(**self.env(protocol, **overrides))  # type: ignore[arg-type]


SCREEN = "The screen is broken and cracked, clearly a defect."


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    from tools.kafka_broker import KafkaBroker

    data = tmp_path_factory.mktemp("secure-kafka")
    pki = make_pki(data / "pki")
    plain, mtls, sasl = free_port(), free_port(), free_port()
    props = {
        # the server's key and certificate chain, and the CA clients are checked against: PEM files
        "ssl.keystore.type": "PEM", "ssl.keystore.location": str(pki.server_pem),
        "ssl.truststore.type": "PEM", "ssl.truststore.location": str(pki.ca),
        "listener.name.ssl.ssl.client.auth": "required",  # mTLS: no certificate, no connection
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }
    broker = KafkaBroker(data / "broker", plain, extra_properties=props,
                         listeners=f"PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{mtls},"
                                   f"SASL_SSL://127.0.0.1:{sasl}")
    broker.start(timeout=180)
    try:
        admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap], client_id="h4-setup")
        try:  # the SCRAM user (kafka-configs --alter --add-config 'SCRAM-SHA-512=[...]')
            done = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(USER, ScramMechanism.SCRAM_SHA_512, PASSWORD)])
            assert done == {USER: None}, done
        finally:
            admin.close()
        yield SecureKafka(broker.bootstrap, f"127.0.0.1:{mtls}", f"127.0.0.1:{sasl}", pki)
    finally:
        broker.stop()


PROTOCOLS = ["SASL_SSL", "SSL"]


def topic(name: str, partitions: int) -> TopicSpec:
    return TopicSpec(name, partitions, key="any", value=Envelope, description="a test topic")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kafka_python_creates_writes_and_reads_over_the_secure_listener(kafka: SecureKafka,
                                                                       protocol: str) -> None:
    security = kafka_python_kwargs(kafka.settings(protocol))
    bootstrap = [kafka.env(protocol)["KAFKA_BOOTSTRAP_SERVERS"]]
    spec = topic(f"h4.kafka-python.{protocol.lower()}", 2)
    # ensure_topics and read_topic, as `python -m services topics` and the rebuilds use them
    assert ensure_topics(bootstrap, (spec,), security=security) == [spec.name]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **security)
    try:
        for i in range(5):
            producer.send(spec.name, key=str(i).encode(), value=json.dumps({"data": {"i": i}}).encode())
        producer.flush(timeout=30)
    finally:
        producer.close()
    assert sorted(e["data"]["i"] for e in read_topic(bootstrap, spec.name, security=security)) == list(range(5))


def topics_command(env: dict[str, str]) -> subprocess.Popen[str]:
    """`python -m services topics` (kafka-python) with ``env``: in a process of its own, so that
    the sockets of a refused connection go with it."""
    return subprocess.Popen([sys.executable, "-m", "services", "topics"],  # noqa: S603
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_a_wrong_password_no_client_certificate_or_an_untrusted_ca_is_refused(kafka: SecureKafka) -> None:
    pki = kafka.pki
    no_cert = {k: v for k, v in kafka.env("SSL").items() if k not in ("KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")}
    cases = {
        # the same listener and command let the right password in: the refusals are the settings'
        "right password": (kafka.env("SASL_SSL"), 0),
        "wrong password": (kafka.env("SASL_SSL", KAFKA_SASL_PASSWORD="not-the-password"), 1),
        "unknown user": (kafka.env("SASL_SSL", KAFKA_SASL_USERNAME="nobody"), 1),
        "untrusted CA": (kafka.env("SASL_SSL", KAFKA_SSL_CAFILE=str(pki.other_ca)), 1),
        # mTLS: the CA alone is not enough, the broker wants the client's certificate
        "mTLS without a certificate": (no_cert, 1),
        "mTLS with its certificate": (kafka.env("SSL"), 0),
    }
    running = {what: topics_command(env) for what, (env, _) in cases.items()}  # in parallel
    for what, proc in running.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == cases[what][1], f"{what}: {proc.returncode}\n{err[-2000:]}"
        if proc.returncode:
            assert "cannot create topics" in err, (what, err[-2000:])
        assert PASSWORD not in out + err and "not-the-password" not in out + err, what

    # aiokafka (the archive's consumer, faust) says so too, without retrying for ever
    async def aiokafka_start(settings: TransportSettings, bootstrap: str) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=8000,
                                    **aiokafka_kwargs(settings))
        try:
            await producer.start()
        finally:
            await producer.stop()

    from aiokafka.errors import KafkaError as AioKafkaError

    with pytest.raises(AioKafkaError):
        asyncio.run(aiokafka_start(kafka.settings("SASL_SSL", KAFKA_SASL_PASSWORD="not-it"), kafka.sasl_ssl))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_archives_aiokafka_consumer_reads_over_the_secure_listener(kafka: SecureKafka,
                                                                       protocol: str) -> None:
    from services.common.consumer import BatchConsumer
    from services.common.settings import CommonSettings

    settings = CommonSettings(**kafka.env(protocol))  # type: ignore[arg-type]
    spec = topic(f"h4.aiokafka.{protocol.lower()}", 1)
    ensure_topics([settings.kafka_bootstrap_servers], (spec,), security=kafka_python_kwargs(settings))

    async def roundtrip() -> list[bytes]:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                    **aiokafka_kwargs(settings))
        await producer.start()
        try:
            for i in range(3):
                await producer.send_and_wait(spec.name, f"r{i}".encode())
        finally:
            await producer.stop()
        batch = BatchConsumer(settings=settings, group_id=f"h4-{uuid.uuid4().hex[:6]}",
                              handle=None,  # type: ignore[arg-type]
                              specs=(spec,), size=10, within=0.5, fetch_ahead=10)
        consumer = batch.make_consumer()  # what the archive runs
        consumer.subscribe([spec.name])
        await consumer.start()
        got: list[bytes] = []
        try:
            async with asyncio.timeout(60):
                while len(got) < 3:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        got += [r.value for r in records]
        finally:
            await consumer.stop()
        return got

    assert sorted(asyncio.run(roundtrip())) == [b"r0", b"r1", b"r2"]




@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_faust_service_runs_over_the_secure_listener(kafka: SecureKafka, protocol: str, redis_url: str,
                                                       redis_prefix: str, test_roster: Path,
                                                       tmp_path: Path) -> None:
    run, port = uuid.uuid4().hex[:6], free_port()
    env = {**kafka.env(protocol), "KAFKA_REBALANCE_TIMEOUT": "10", "REDIS_URL": redis_url,
           "REDIS_PREFIX": f"{redis_prefix}{run}:", "ROUTER_ROSTER_FILE": str(test_roster),
           "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "ROUTER_HTTP_PORT": str(port), "LOG_LEVEL": "info"}
    # the topics, by the image's own command, over the secure listener
    done = subprocess.run([sys.executable, "-m", "services", "topics"], env={**os.environ, **env},  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert PASSWORD not in done.stdout + done.stderr
    security = kafka_python_kwargs(kafka.settings(protocol))
    bootstrap = [env["KAFKA_BOOTSTRAP_SERVERS"]]
    router = Service("router", env, port, tmp_path)
    try:
        wait_for(router.healthy, timeout=120, what=f"the router healthy on {protocol}")
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **security)
        try:
            for i in range(3):
                event = registered_event(run, i, subject=f"tls {i}", description=SCREEN)
                producer.send("complaints.registered", key=event.key(), value=event.to_bytes())
            producer.flush(timeout=30)
        finally:
            producer.close()

        def routed() -> set[str]:
            found = {str(e.get("subject")) for e in read_topic(bootstrap, "complaints.routed", idle=2,
                                                               security=security)}
            return {s for s in found if s.startswith(f"K{run}-")}

        got: Any = wait_for(lambda: len(routed()) >= 3 and routed(), timeout=120,
                            what="3 complaints routed by the faust service", interval=1)
        assert got == {f"K{run}-{i:05d}" for i in range(3)}
        assert PASSWORD not in router.log_path.read_text(errors="replace")
    finally:
        router.stop()
