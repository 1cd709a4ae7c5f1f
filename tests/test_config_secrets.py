"""Configuration errors name the variable (or file), the field and the problem, never the value:
a rejected INTAKE_SIGNING_SECRETS, NOTIFIER_SMTP or DESK_JWT_SECRET must not print its secret."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.archive.settings import ArchiveSettings
from services.common.errors import ConfigError
from services.common.policy import load_policy
from services.common.settings import load_settings
from services.desk.settings import DeskSettings
from services.intake.settings import IntakeSettings
from services.notifier.settings import NotifierSettings
from services.router.settings import RouterSettings
from services.sla_monitor.settings import SlaMonitorSettings

SECRET = "RECOGNISABLE-s3cret-4f9a2c"  # noqa: S105 - a marker to look for in error messages
IDENTITY = {"INTAKE_IDENTITY_KEY": "test-identity-key-of-the-suite"}


@pytest.mark.parametrize(("cls", "env", "field"), [
    # an unknown channel beside a good secret: the validator's whole input held the secret
    (IntakeSettings, {"INTAKE_SIGNING_SECRETS": f'{{"web_form": "{SECRET}", "pigeon": "{SECRET}x"}}'},
     "INTAKE_SIGNING_SECRETS"),
    # too short a secret (the secret itself is the rejected input)
    (IntakeSettings, {"INTAKE_SIGNING_SECRETS": '{"web_form": "RECOG-short"}'}, "INTAKE_SIGNING_SECRETS"),
    # JSON that does not parse
    (IntakeSettings, {"INTAKE_SIGNING_SECRETS": f'{{"web_form": "{SECRET}"'}, "INTAKE_SIGNING_SECRETS"),
    # a bad port beside the password; missing fields, whose input is the whole object
    (NotifierSettings, {"NOTIFIER_SMTP": f'{{"host": "smtp.example.com", "port": "x", "password": "{SECRET}"}}'},
     "NOTIFIER_SMTP"),
    (NotifierSettings, {"NOTIFIER_SMTP": f'{{"host": "smtp.example.com", "password": "{SECRET}"'}, "NOTIFIER_SMTP"),
    (NotifierSettings, {"NOTIFIER_SMS_GATEWAY": f'{{"token": "{SECRET}"}}'},
     "NOTIFIER_SMS_GATEWAY"),
    (NotifierSettings, {"NOTIFIER_CHAT": f'{{"handler": {{"url": "https://x/?key={SECRET}"}}}}'},
     "NOTIFIER_CHAT"),
    # a model-level error (the lease against the SMTP timeout): its input is every value
    (NotifierSettings, {"NOTIFIER_SEND_LEASE": "5", "NOTIFIER_SMTP": (
        f'{{"host": "h", "sender": "s@example.com", "domain": "example.com", "timeout": 10, '
        f'"password": "{SECRET}"}}')}, "NOTIFIER_SEND_LEASE"),
    (IntakeSettings, {"INTAKE_IDENTITY_KEY": "RECOG"}, "INTAKE_IDENTITY_KEY"),
    (DeskSettings, {"ARCHIVE_DATABASE_URL": f"postgresql://u:{SECRET}@h/db", "DESK_PAGE_SIZE": "900",
                    "DESK_MAX_PAGE_SIZE": "100"}, "(?s:.)"),
    (ArchiveSettings, {"ARCHIVE_DATABASE_URL": f"postgresql://u:{SECRET}@h/db", "ARCHIVE_HTTP_PORT": SECRET},
     "ARCHIVE_HTTP_PORT"),
    (RouterSettings, {"REDIS_URL": f"redis://:{SECRET}@h:6379/0", "ROUTER_CASE_TTL_DAYS": SECRET},
     "ROUTER_CASE_TTL_DAYS"),
    (SlaMonitorSettings, {"SLA_MONITOR_BATCH": SECRET}, "SLA_MONITOR_BATCH"),
])
def test_a_rejected_setting_names_its_variable_but_never_its_value(
        cls: type, env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a bad value that holds a recognisable secret
    for name, value in {**IDENTITY, **env}.items():
        monkeypatch.setenv(name, value)
    # When the settings are loaded
    with pytest.raises(ConfigError) as err:
        load_settings(cls)
    # Then the error names the variable and a problem, and no part of the secret shows
    message = str(err.value)
    assert message.startswith("environment: ")
    assert re.search(field, message), message
    assert "RECOG" not in message, message


def test_a_service_refusing_to_start_prints_no_secret(tmp_path: Path) -> None:
    # Given intake started with signing secrets for a channel that does not exist
    env = {"PATH": "/usr/bin:/bin", "COMPLAINTS_DATA_DIR": str(tmp_path), **IDENTITY,
           "INTAKE_SIGNING_SECRETS": f'{{"pigeon": "{SECRET}"}}'}
    # When it starts
    done = subprocess.run([sys.executable, "-m", "services", "run", "intake"], env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    # Then it stops with the configuration error naming the variable, and the secret nowhere
    assert done.returncode == 2, done.stderr
    assert "INTAKE_SIGNING_SECRETS" in done.stderr and "unknown channels" in done.stderr
    assert "RECOG" not in done.stderr + done.stdout


def test_a_policy_error_names_file_and_field_but_not_the_value(tmp_path: Path) -> None:
    # Given a policy whose time zone is a recognisable bad value
    policy = tmp_path / "policy.yaml"
    text = Path("services/common/default_policy.yaml").read_text(encoding="utf-8")
    policy.write_text(text.replace("timezone: Asia/Shanghai", f"timezone: {SECRET}", 1), encoding="utf-8")
    assert SECRET in policy.read_text(encoding="utf-8")
    # When it is loaded
    with pytest.raises(ConfigError) as err:
        load_policy(policy)
    # Then the error names the file and the field, not the value
    assert str(policy) in str(err.value) and "timezone" in str(err.value)
    assert "RECOG" not in str(err.value)



# ---- the customer identity key has no public default --------------------------------------------

def test_intake_refuses_to_start_without_an_identity_key(tmp_path: Path) -> None:
    # Given no INTAKE_IDENTITY_KEY and a data dir without the key file `complaints up` writes
    env = {"PATH": "/usr/bin:/bin", "COMPLAINTS_DATA_DIR": str(tmp_path)}
    # When intake starts
    done = subprocess.run([sys.executable, "-m", "services", "run", "intake"], env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    # Then it stops with a configuration error naming the variable and the file it looked for
    assert done.returncode == 2, done.stderr
    assert "INTAKE_IDENTITY_KEY: not set" in done.stderr
    assert str(tmp_path / "identity-key") in done.stderr


@pytest.mark.parametrize("cls", [IntakeSettings, DeskSettings])
def test_the_identity_key_comes_from_the_environment_or_the_data_dirs_file(
        cls: type[IntakeSettings] | type[DeskSettings], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.privacy import ensure_identity_key

    monkeypatch.delenv("INTAKE_IDENTITY_KEY", raising=False)
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    # Given neither: Then there is no key (no public default to fall back on)
    with pytest.raises(ConfigError, match="INTAKE_IDENTITY_KEY: not set"):
        load_settings(cls).identity_secret()
    # Given the file `complaints up` writes: Then it is random, the owner's only, and used
    path = ensure_identity_key(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    key = load_settings(cls).identity_secret()
    assert key == path.read_text(encoding="utf-8").strip().encode() and len(key) >= 32
    assert ensure_identity_key(tmp_path).read_text(encoding="utf-8").encode() == key  # kept
    # Given INTAKE_IDENTITY_KEY: Then it wins
    monkeypatch.setenv("INTAKE_IDENTITY_KEY", "an-operator-chosen-identity-key")
    assert load_settings(cls).identity_secret() == b"an-operator-chosen-identity-key"


def test_complaints_up_writes_an_identity_key_unless_one_is_set(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.devstack.up import UpSettings, _service_env

    # Given `complaints up` in an environment without INTAKE_IDENTITY_KEY
    monkeypatch.delenv("INTAKE_IDENTITY_KEY", raising=False)
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DESK_JWT_SECRET", "x" * 32)
    # When it prepares the services' environment
    _service_env(load_settings(UpSettings), embedded_broker=True, sla_scale=1, outbox=tmp_path / "o")
    # Then the data dir has a random key, readable by its owner only, which intake and the desk use
    path = tmp_path / "identity-key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_settings(IntakeSettings).identity_secret() == load_settings(DeskSettings).identity_secret()
    assert load_settings(IntakeSettings).identity_secret() == path.read_text(encoding="utf-8").encode()


def test_complaints_post_with_bad_signing_secrets_names_the_variable_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from tools.cli import main

    # Given signing secrets whose JSON is cut short, holding a recognisable secret
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("INTAKE_SIGNING_SECRETS", f'{{"web_form": "{SECRET}"')
    # When `complaints post` signs a file with them
    code = main(["post", "web_form", "examples/web_form/laptop-repair.json", "--url", "http://127.0.0.1:9"])
    # Then it stops with a configuration error naming the variable, and the secret nowhere
    err = capsys.readouterr()
    assert code == 2 and "INTAKE_SIGNING_SECRETS: not valid JSON" in err.err
    assert "RECOG" not in err.err + err.out
