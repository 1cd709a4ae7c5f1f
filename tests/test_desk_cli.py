"""`complaints staff token` and the desk's start-up checks: the token verifies with the stack's
secret, and every configuration error names the variable or file, never the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.common.settings import load_settings
from services.desk.auth import Identity, TokenVerifier, ensure_secret
from services.desk.settings import DeskSettings
from tools import cli


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("DESK_JWT_SECRET", "DESK_JWT_SECRET_FILE", "DESK_JWKS", "DESK_JWT_ISSUER", "DESK_JWT_AUDIENCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    return tmp_path


def test_a_minted_token_verifies_with_the_stacks_secret(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the secret `complaints up` leaves in the data dir
    ensure_secret(data_dir)
    # When a token is minted for a handler of quality
    assert cli.main(["staff", "token", "--id", "ann", "--role", "handler", "--role", "reviewer",
                     "--department", "quality", "--ttl", "30m"]) == 0
    token = capsys.readouterr().out.strip()
    # Then the desk, configured the same way, reads her identity from it
    verifier = TokenVerifier.from_settings(load_settings(DeskSettings))
    assert verifier.verify(token) == Identity("ann", ("handler", "reviewer"), "quality")


def test_without_a_secret_the_command_says_where_to_get_one(data_dir: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["staff", "token", "--id", "ann", "--role", "handler"]) == 2
    err = capsys.readouterr().err
    assert "desk-jwt-secret" in err and "complaints up" in err


@pytest.mark.parametrize(("env", "names"), [
    ({"DESK_JWT_SECRET": "short-but-secret"}, "DESK_JWT_SECRET"),
    ({"DESK_JWT_SECRET": "x" * 40, "DESK_JWKS": "https://idp/jwks"}, "DESK_JWKS"),
    ({"DESK_JWKS": "http://idp/jwks"}, "DESK_JWKS"),
    ({"DESK_JWKS": "/nowhere/jwks.json"}, "DESK_JWKS"),
])
def test_a_bad_key_setting_stops_the_start_naming_the_field_not_the_secret(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: str) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        TokenVerifier.from_settings(load_settings(DeskSettings))
    assert names in str(caught.value)
    assert "short-but-secret" not in str(caught.value) and "x" * 40 not in str(caught.value)


def test_page_sizes_are_checked(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESK_PAGE_SIZE", "300")
    with pytest.raises(ConfigError, match="DESK_PAGE_SIZE"):
        load_settings(DeskSettings)
