"""Transport security settings (TLS, SASL, Redis ACL users): validated at start-up, each error
naming its variables and never a secret, and turned into the same configuration for every client
library (faust, aiokafka, kafka-python, redis-py). Pure: no broker, no Redis (those are in
test_transport_redis.py and test_transport_kafka.py)."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import ConfigError
from services.common.settings import CommonSettings, load_settings
from services.common.transport import (
    aiokafka_kwargs,
    faust_credentials,
    kafka_python_kwargs,
    kafka_ssl_context,
    redis_kwargs,
)
from tests.tls import KEY_PASSWORD, Pki, make_pki

SECRET = "sasl-pass-word-9f8e7d"  # noqa: S105 - must never show in an error


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> CommonSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(CommonSettings)


def refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ConfigError) as err:
        settings(monkeypatch, **env)
    return str(err.value)


def test_the_default_is_plaintext_and_adds_nothing_to_any_client(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch)
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert faust_credentials(s) is None
    assert aiokafka_kwargs(s) == kafka_python_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    assert redis_kwargs(s) == {}


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_a_sasl_protocol_needs_mechanism_user_and_password(monkeypatch: pytest.MonkeyPatch,
                                                          protocol: str) -> None:
    message = refused(monkeypatch, KAFKA_SECURITY_PROTOCOL=protocol, KAFKA_SASL_PASSWORD=SECRET)
    assert f"KAFKA_SASL_MECHANISM is required with KAFKA_SECURITY_PROTOCOL={protocol}" in message
    assert f"KAFKA_SASL_USERNAME is required with KAFKA_SECURITY_PROTOCOL={protocol}" in message
    assert "KAFKA_SASL_PASSWORD is required" not in message
    assert SECRET not in message


def test_sasl_settings_without_a_sasl_protocol_are_refused_not_ignored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(monkeypatch, KAFKA_SASL_USERNAME="svc", KAFKA_SASL_PASSWORD=SECRET)
    assert "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL" in message
    assert "KAFKA_SASL_PASSWORD is set" in message and SECRET not in message


def test_an_unknown_protocol_or_mechanism_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "KAFKA_SECURITY_PROTOCOL" in refused(monkeypatch, KAFKA_SECURITY_PROTOCOL="TLS")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    message = refused(monkeypatch, KAFKA_SASL_MECHANISM="GSSAPI", KAFKA_SASL_USERNAME="svc",
                      KAFKA_SASL_PASSWORD=SECRET)
    assert "KAFKA_SASL_MECHANISM" in message and SECRET not in message


def test_certificate_files_must_exist_and_a_client_certificate_needs_its_key(
        monkeypatch: pytest.MonkeyPatch, pki: Pki, tmp_path: Path) -> None:
    message = refused(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL",
                      KAFKA_SSL_CAFILE=str(tmp_path / "missing.pem"), KAFKA_SSL_CERTFILE=str(pki.client_cert))
    assert "KAFKA_SSL_CAFILE: no such file" in message
    assert "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together" in message


def test_tls_files_without_tls_are_refused(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    message = refused(monkeypatch, KAFKA_SSL_CAFILE=str(pki.ca), REDIS_SSL_CA_CERTS=str(pki.ca))
    assert "KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no TLS" in message
    assert "REDIS_SSL_CA_CERTS is set but REDIS_URL is not rediss:// (TLS)" in message


def test_redis_url_scheme_and_acl_user_are_checked_without_printing_the_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(monkeypatch, REDIS_URL=f"http://user:{SECRET}@redis:6379/0")
    assert "REDIS_URL must start with redis://, rediss:// (TLS) or unix://" in message
    assert SECRET not in message
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    assert "REDIS_USERNAME is set without REDIS_PASSWORD" in refused(monkeypatch, REDIS_USERNAME="svc")


def test_sasl_ssl_gives_every_kafka_client_the_same_tls_and_scram_settings(
        monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    s = settings(monkeypatch, KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                 KAFKA_SASL_USERNAME="complaints-router", KAFKA_SASL_PASSWORD=SECRET,
                 KAFKA_SSL_CAFILE=str(pki.ca))
    # faust: SASL credentials carrying a TLS context, so the protocol is SASL_SSL
    creds = faust_credentials(s)
    assert type(creds).__name__ == "SASLCredentials"
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert (creds.username, creds.password) == ("complaints-router", SECRET)
    assert SECRET not in repr(creds)
    for kwargs in (aiokafka_kwargs(s), kafka_python_kwargs(s)):
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("complaints-router", SECRET)
        context = kwargs["ssl_context"]
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        # the CA file is the trust anchor
        assert any(c["subject"] == ((("commonName", "complaints test CA"),),)
                   for c in context.get_ca_certs())


def test_mtls_loads_the_client_certificate_with_an_encrypted_key(monkeypatch: pytest.MonkeyPatch,
                                                                pki: Pki) -> None:
    s = settings(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=str(pki.ca),
                 KAFKA_SSL_CERTFILE=str(pki.client_cert), KAFKA_SSL_KEYFILE=str(pki.client_key_encrypted),
                 KAFKA_SSL_KEY_PASSWORD=KEY_PASSWORD)
    assert kafka_ssl_context(s) is not None
    creds = faust_credentials(s)
    assert type(creds).__name__ == "SSLCredentials" and creds.protocol.value == "SSL"
    assert "sasl_mechanism" not in aiokafka_kwargs(s)
    # a wrong key password fails when the context is built, at start-up
    monkeypatch.setenv("KAFKA_SSL_KEY_PASSWORD", "not-the-password")
    with pytest.raises(ssl.SSLError):
        kafka_ssl_context(load_settings(CommonSettings))


def test_redis_tls_and_acl_user_reach_redis_py(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> None:
    s = settings(monkeypatch, REDIS_URL="rediss://redis:6380/0", REDIS_USERNAME="complaints",
                 REDIS_PASSWORD=SECRET, REDIS_SSL_CA_CERTS=str(pki.ca),
                 REDIS_SSL_CERTFILE=str(pki.client_cert), REDIS_SSL_KEYFILE=str(pki.client_key))
    assert redis_kwargs(s) == {"username": "complaints", "password": SECRET, "ssl_cert_reqs": "required",
                               "ssl_check_hostname": True, "ssl_ca_certs": str(pki.ca),
                               "ssl_certfile": str(pki.client_cert), "ssl_keyfile": str(pki.client_key)}
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())


def test_the_faust_app_of_a_service_carries_the_credentials(monkeypatch: pytest.MonkeyPatch, pki: Pki,
                                                            tmp_path: Path) -> None:
    from services.common.runtime import make_app

    s = settings(monkeypatch, KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
                 KAFKA_SASL_USERNAME="svc", KAFKA_SASL_PASSWORD=SECRET, KAFKA_SSL_CAFILE=str(pki.ca),
                 COMPLAINTS_DATA_DIR=str(tmp_path))
    creds: Any = make_app("transport-test", s, web_port=18099).conf.broker_credentials
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-256"


def test_a_service_with_bad_transport_settings_stops_at_start_up_naming_them(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "COMPLAINTS_DATA_DIR": str(tmp_path), "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "KAFKA_SASL_PASSWORD": SECRET, "REDIS_URL": f"redis://u:{SECRET}@x:1/0"}
    done = subprocess.run([sys.executable, "-m", "services", "run", "router"], env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "KAFKA_SASL_MECHANISM is required" in done.stderr
    assert "KAFKA_SASL_USERNAME is required" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_the_metrics_port_must_differ_from_the_http_port(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.router.settings import RouterSettings

    monkeypatch.setenv("ROUTER_HTTP_PORT", "8081")
    monkeypatch.setenv("METRICS_PORT", "8081")
    with pytest.raises(ConfigError, match="METRICS_PORT must differ from the service's HTTP port"):
        load_settings(RouterSettings)
    monkeypatch.setenv("METRICS_PORT", "9100")
    assert load_settings(RouterSettings).metrics_port == 9100
    monkeypatch.setenv("METRICS_PORT", "0")
    with pytest.raises(ConfigError, match="METRICS_PORT"):
        load_settings(RouterSettings)
