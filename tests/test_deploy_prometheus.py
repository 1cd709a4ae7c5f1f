"""The Prometheus files: config and rules valid, the alert rules' unit tests pass (promtool).

promtool comes from Debian's `prometheus` package; the test command in the README installs
it when it is missing. Without it these tests fail: they are never skipped. Beyond promtool:
every metric and service a rule names exists in the code, every rule has a unit test in
which it fires, the labels Alertmanager routes on and the annotations people read, and a
line in docs/operations.md's table of alerts; the one-machine config scrapes every service
at the port its settings default to.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.__main__ import SERVICES
from tests.test_deploy_compose import PORTS, defined_metric_names, expr_metric_names

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "prometheus"
OPERATIONS = ROOT / "docs" / "operations.md"
RULE_TESTS = sorted(p.name for p in DEPLOY.glob("*test*.yml"))
"""promtool's unit tests of alerts.yml: alerts.test.yml, and alerts.new-series.test.yml where
every counter's series is born mid-test at its first count (as a real scrape sees it)."""
SCRAPE_METRICS = {"up", "process_start_time_seconds"}
"""Series the rules read that no service defines by name: Prometheus' own, and
prometheus_client's process collector's (registered by every service's metrics.py)."""


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: install Debian's prometheus package (the README's test command does)"
    return subprocess.run([tool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120,  # noqa: S603
                          check=False)


def rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml."""
    spec = yaml.safe_load((DEPLOY / "alerts.yml").read_text(encoding="utf-8"))
    return [r for g in spec["groups"] for r in g["rules"]]


@pytest.mark.parametrize("args", [
    ("check", "config", "prometheus.yml"),
    ("check", "rules", "alerts.yml"),
    *(("test", "rules", name) for name in RULE_TESTS),
])
def test_promtool_accepts_the_config_and_the_rules_pass_their_tests(args: tuple[str, ...]) -> None:
    done = promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_metric_the_rules_use_is_one_the_services_define() -> None:
    # Given every rule's expression, When its metric names are read (histograms by their
    # _bucket series, counters with _total), Then the services' code defines each of them
    used = {name for r in rules() for name in expr_metric_names(r["expr"])} - SCRAPE_METRICS
    defined = defined_metric_names()
    assert used and used <= defined, used - defined
    # And every service a rule selects by its `service` label is one of the services
    named = {s for r in rules()
             for value in re.findall(r'\bservice\s*!?=~?\s*"([^"]*)"', r["expr"])
             for s in value.split("|")}
    assert {"sla-monitor", "archive"} <= named and named <= set(SERVICES), named - set(SERVICES)


def rule_tests() -> list[dict[str, Any]]:
    """Every test case of every promtool unit-test file."""
    return [t for name in RULE_TESTS
            for t in yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))["tests"]]


def test_every_rule_fires_in_a_unit_test_and_is_labelled_and_explained() -> None:
    assert {"alerts.test.yml", "alerts.new-series.test.yml"} <= set(RULE_TESTS)
    tests = rule_tests()
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]}
    documented = set(re.findall(r"^\| ([A-Za-z]+) \| (?:critical|warning) \|", OPERATIONS.read_text(encoding="utf-8"),
                                re.M))
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)), "an alert name repeats"
    for r in rules():
        name = r["alert"]
        assert name in fired, f"{name}: no test case of alerts.test.yml expects it to fire"
        assert r["labels"]["severity"] in {"critical", "warning"}, name
        assert r["labels"]["team"].startswith("complaints-"), name
        assert {"summary", "description"} <= r["annotations"].keys(), name
        assert name in documented, f"{name}: no line in docs/operations.md's table of alerts"


def test_the_archive_is_watched_by_its_own_rules_and_the_generic_ones() -> None:
    # Given the rules, Then the archive has rules of its own for being down, writes that
    # stall and writes that are slow, on the metrics it defines
    by_name = {r["alert"]: r["expr"] for r in rules()}
    assert {"ArchiveDown", "ArchiveWritesStalled", "ArchiveBatchesSlow"} <= by_name.keys()
    assert "complaints_archive_batches_total" in by_name["ArchiveWritesStalled"]
    assert "complaints_archive_batch_seconds_bucket" in by_name["ArchiveBatchesSlow"]
    # And its lag and dead letters fall under the generic rules: their unit tests fire them
    # for service="archive" (promtool runs them above)
    tests = yaml.safe_load((DEPLOY / "alerts.test.yml").read_text(encoding="utf-8"))["tests"]
    fired_for_archive = {case["alertname"] for t in tests for case in t["alert_rule_test"]
                         for alert in case["exp_alerts"] if alert["exp_labels"].get("service") == "archive"}
    assert fired_for_archive == {"ComplaintsConsumerLagHigh", "ComplaintsDeadLettered"}


def test_the_one_machine_config_scrapes_every_service_at_its_default_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {c["labels"]["service"]: c["targets"] for job in config["scrape_configs"]
               for c in job["static_configs"]}
    assert targets == {name: [f"127.0.0.1:{port}"] for name, port in PORTS.items()}


COUNTED = re.compile(r"\b(?:increase|rate)\((complaints_[a-z_]+_total)\b")


def test_every_rule_that_counts_events_also_counts_a_series_born_in_its_window() -> None:
    # Given the rules that count a counter's events over a window with increase(), When a
    # labelled series is born at its first count (Prometheus scrapes it at 1, and increase()
    # sees no increase), Then the rule also counts the new series' value: the same counter
    # `unless` itself a window ago, guarded by its target's scrape or its process' age
    # (alerts.yml, "Counters and new series"). Exempt: the surge rule compares rates over
    # days, and intake creates its series at 0 (tests/test_metrics_init.py); the archive's
    # stall looks for no batch at all (an unlabelled counter, exported at 0 from start-up).
    checked = set()
    for r in rules():
        for counter in set(COUNTED.findall(r["expr"])):
            if r["alert"] in {"ComplaintsInboundSurge", "ArchiveWritesStalled"}:
                continue
            for window in re.findall(rf"increase\({counter}(?:\{{[^}}]*\}})?\[(\w+)\]\)", r["expr"]):
                born = rf"{counter}(?:\{{[^}}]*\}})?\s+unless {counter}(?:\{{[^}}]*\}})? offset {window}\)"
                seconds = int(window[:-1]) * {"m": 60, "h": 3600}[window[-1]]
                guard = (rf"and on \(job, instance\) \(up offset {window} == 1 or "
                         rf"time\(\) - process_start_time_seconds < {seconds}\)")
                assert re.search(born + r"\s+" + guard, r["expr"]), (r["alert"], counter, window)
                checked.add(r["alert"])
    assert checked >= {"MajorComplaintDeadlineBreached", "ComplaintBreachRateHigh",
                       "ComplaintTimelinessBelowTarget", "ComplaintsDeadLettered", "NotificationsFailing",
                       "NotificationsHeldInDoubt", "PeriodicJobStuck"}, checked
