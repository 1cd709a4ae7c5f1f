"""The Prometheus files: config and rules valid, the alert rules' unit tests pass (promtool).

promtool comes from Debian's `prometheus` package; the test command in the README installs
it when it is missing. Without it these tests fail: they are never skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
SOURCES = Path(__file__).resolve().parent.parent / "services"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: install Debian's prometheus package (the README's test command does)"
    return subprocess.run([tool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120,  # noqa: S603
                          check=False)


@pytest.mark.parametrize("args", [
    ("check", "config", "prometheus.yml"),
    ("check", "rules", "alerts.yml"),
    ("test", "rules", "alerts.test.yml"),
])
def test_promtool_accepts_the_config_and_the_rules_pass_their_tests(args: tuple[str, ...]) -> None:
    done = promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_metric_the_rules_use_is_one_the_services_define() -> None:
    used = set(re.findall(r"\b(complaints_[a-z_]+)", (DEPLOY / "alerts.yml").read_text()))
    code = "\n".join(p.read_text() for p in SOURCES.rglob("*.py"))
    defined = set(re.findall(r'"(complaints_[a-z_]+)"', code))
    assert used and used <= defined, used - defined
