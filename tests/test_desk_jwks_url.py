"""Staff tokens verified against an identity provider's JWKS served over https (deployments).

A real TLS server on 127.0.0.1 with a certificate of its own (trusted through SSL_CERT_FILE,
as a deployment trusts its provider's CA) serves the key set; the verifier fetches it by URL.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from services.desk import auth

pytestmark = pytest.mark.integration  # a server over a real connection


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, rsa.RSAPrivateKey, list[int]]]:
    """An https JWKS endpoint with one RS256 key (kid p1); yields its URL, the key, the fetch count."""
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "p1", "alg": "RS256", "use": "sig"}]}).encode()
    fetches: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the library's name
            fetches.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    cert_file, key_file = self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the deployment trusts its provider's CA
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", signing, fetches
    finally:
        server.shutdown()
        server.server_close()


def token(key: rsa.RSAPrivateKey, *, kid: str = "p1", sub: str = "ann") -> str:
    return jwt.encode({"sub": sub, "roles": ["handler"], "department": "quality",
                       "exp": int(time.time()) + 60}, key, algorithm="RS256", headers={"kid": kid})


def test_a_token_of_the_providers_key_verifies_and_the_key_set_is_fetched_once(
        provider: tuple[str, rsa.RSAPrivateKey, list[int]]) -> None:
    # Given the identity provider's key set at an https URL
    url, signing, fetches = provider
    verifier = auth.TokenVerifier(jwks=url)
    # When two of its tokens are verified
    first, second = verifier.verify(token(signing)), verifier.verify(token(signing, sub="bob"))
    # Then both identities come from the tokens, and the keys were fetched once (cached)
    assert (first.sub, first.roles, first.department, second.sub) == ("ann", ("handler",), "quality", "bob")
    assert len(fetches) == 1


def test_a_token_of_another_key_is_refused(provider: tuple[str, rsa.RSAPrivateKey, list[int]]) -> None:
    # Given the provider's key set, and a token signed by a key not in it (under its kid, and another)
    url, _, _ = provider
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = auth.TokenVerifier(jwks=url)
    # Then neither verifies
    for bad in (token(stranger), token(stranger, kid="p9")):
        with pytest.raises(auth.Unauthorized):
            verifier.verify(bad)


def test_an_unreachable_provider_is_an_outage_not_a_bad_token(tmp_path: Path) -> None:
    # Given a JWKS URL where nothing answers (the provider is down)
    from tests.harness import free_port

    verifier = auth.TokenVerifier(jwks=f"https://127.0.0.1:{free_port()}/.well-known/jwks.json")
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # When a token is verified
    # Then it is a temporary failure (the APIs answer 503), not the token's fault (401)
    with pytest.raises(auth.KeysUnavailable):
        verifier.verify(token(signing))
