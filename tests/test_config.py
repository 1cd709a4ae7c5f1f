"""Configuration is validated at start-up; errors name the file, the field and the problem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.common.policy import DEFAULT_POLICY, load_policy, parse_duration
from services.common.settings import load_settings
from services.intake.settings import IntakeSettings


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)),
    ("3d", timedelta(days=3)), ("1.5h", timedelta(minutes=90)), (45, timedelta(seconds=45)),
])
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["soon", "1w", "", True, "-1h"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


def _policy_with(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "message"), [
    ("{general: 1h, urgent: 30m, major: 10m}", "{general: soon, urgent: 30m, major: 10m}",
     "sla.milestones.respond.targets.general: Value error, not a duration"),
    ("{general: 1h, urgent: 30m, major: 10m}", "{general: 1h, urgent: 30m}",
     "sla.milestones.respond: Value error, targets lacks severities ['major']"),
    ("levels: {general: L1, urgent: L2, major: L3}", "levels: {general: L1, urgent: L9, major: L3}",
     "router.levels.urgent: Input should be 'L1', 'L2' or 'L3'"),
    ('version: "2026.11-default"', "version: [", "line"),
    ("stop_on: [acknowledged, plan_decided, resolved]", "stop_on: [acknowledgd]",
     "sla.milestones.respond.stop_on: Value error, unknown signals ['acknowledgd']"),
    ("warn_at: [0.5, 0.8]", "warn_at: [0.8, 0.5]",
     "sla.warn_at: Value error, warning thresholds must be ascending shares between 0 and 1"),
    ("SF-01: {general: 8h", "SF1: {general: 8h",
     "sla.milestones.resolve: Value error, by_code: not taxonomy codes"),
])
def test_a_bad_policy_names_file_field_and_problem(tmp_path: Path, old: str, new: str,
                                                   message: str) -> None:
    path = _policy_with(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert str(err.value).startswith(str(path))
    assert message in str(err.value)


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_policy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("var", "value", "field"), [
    ("INTAKE_HTTP_PORT", "eighty", "INTAKE_HTTP_PORT"),
    ("KAFKA_PROCESSING_GUARANTEE", "maybe", "KAFKA_PROCESSING_GUARANTEE"),
    ("COMPLAINTS_SLA_SCALE", "0", "COMPLAINTS_SLA_SCALE"),
    ("REDIS_PREFIX", "has space", "REDIS_PREFIX"),
])
def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                            field: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=f"environment: {field}: "):
        load_settings(IntakeSettings)


def test_defaults_follow_the_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "INTAKE_HTTP_PORT"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(IntakeSettings)
    assert (s.kafka_bootstrap_servers, s.redis_url, s.http_port) == (
        "127.0.0.1:9092", "redis://127.0.0.1:6379/0", 8080)
