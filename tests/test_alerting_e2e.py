"""Alerts reach a person: the stack scraped by a real Prometheus, routed by a real Alertmanager.

Run as an ops team runs it: intake, the router and the SLA monitor (one process each, on a
broker of this test's own and the session's Redis under a prefix of its own), Prometheus
(Debian's `prometheus`, scraping every second and evaluating deploy/prometheus/alerts.yml
every second), Alertmanager (Debian's `prometheus-alertmanager`, group_wait 1 s) sending to
a webhook served by this test. A major complaint's breach, a dead letter and a killed
service each reach the webhook.

The rules Prometheus loads are a copy of alerts.yml with every `for:` shortened to 3 s, so
that the killed service pages within the test's minute instead of after 2 minutes; the
expressions, labels and annotations are the production ones, and the production file keeps
its durations (asserted below).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer

from services.sla_monitor.calendar import ALWAYS_OPEN
from tests.conftest import SLA_SCALE, own_broker
from tests.harness import STAFF_SECRET, TEST_SECRET, Service, free_port, http, post_inbound, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SERVICES = {"intake": "INTAKE_HTTP_PORT", "router": "ROUTER_HTTP_PORT",
            "sla-monitor": "SLA_MONITOR_HTTP_PORT"}
TEST_FOR = "3s"
REACH = 60.0  # seconds from the event to the webhook


class Webhook:
    """An HTTP endpoint that keeps every alert Alertmanager posts to it."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.bodies: list[str] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                with hook._lock:
                    hook.bodies.append(raw)
                    hook.alerts.extend(json.loads(raw).get("alerts", []))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self, alertname: str, **labels: str) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.alerts if a.get("status") == "firing"
                    and a["labels"].get("alertname") == alertname
                    and all(a["labels"].get(k) == v for k, v in labels.items())]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    raise AssertionError(f"{names[0]} is missing: scripts/test-deps.sh installs Debian's package")


def ready(url: str) -> bool:
    try:
        return http("GET", url)[0] == 200
    except OSError:
        return False


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    status, body = http("GET", f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert status == 200, body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def short_for(rules: str) -> str:
    """The rules with every `for:` shortened to TEST_FOR (the test's copy only)."""
    return re.sub(r"^(\s+for:) \S+$", rf"\1 {TEST_FOR}", rules, flags=re.M)


class Proc:
    """A server binary as a child process, its output in a log file."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture()
def monitored(tmp_path: Path, redis_url: str, redis_prefix: str, test_roster: Path,
              ) -> Iterator[tuple[dict[str, Service], str, str, Webhook]]:
    """The three services, Prometheus and Alertmanager, and the webhook they page."""
    webhook = Webhook()
    started: list[Proc] = []
    services: dict[str, Service] = {}
    with own_broker(tmp_path) as broker:
        try:
            env = {"KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_REBALANCE_TIMEOUT": "3",
                   "REDIS_URL": redis_url, "REDIS_PREFIX": f"{redis_prefix}alerting-{uuid.uuid4().hex[:8]}:",
                   "COMPLAINTS_SLA_SCALE": str(SLA_SCALE),
                   "INTAKE_SIGNING_SECRETS": json.dumps({"*": TEST_SECRET}),
                   "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "info",
                   "DESK_JWT_SECRET": STAFF_SECRET,
                   "ROUTER_ROSTER_FILE": str(test_roster), "SLA_MONITOR_CALENDAR_FILE": str(ALWAYS_OPEN),
                   **{var: str(free_port()) for var in SERVICES.values()}}
            for name, var in SERVICES.items():
                services[name] = Service(name, env, int(env[var]), tmp_path)
            for svc in services.values():
                wait_for(svc.healthy, timeout=90, what=f"{svc.name} healthy")

            am_port, prom_port = free_port(), free_port()
            (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump({
                "route": {"receiver": "webhook", "group_by": ["alertname", "service", "milestone"],
                          "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
                "receivers": [{"name": "webhook",
                               "webhook_configs": [{"url": webhook.url, "send_resolved": False}]}],
            }))
            started.append(Proc([binary("prometheus-alertmanager", "alertmanager"),
                                 f"--config.file={tmp_path / 'alertmanager.yml'}",
                                 f"--storage.path={tmp_path / 'am-data'}",
                                 f"--web.listen-address=127.0.0.1:{am_port}",
                                 "--cluster.listen-address="], tmp_path / "alertmanager.log"))
            (tmp_path / "alerts.yml").write_text(short_for(ALERTS.read_text(encoding="utf-8")),
                                                 encoding="utf-8")
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "alerts.yml")],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [
                    {"job_name": f"complaints-{name}",
                     "static_configs": [{"targets": [f"127.0.0.1:{svc.port}"], "labels": {"service": name}}]}
                    for name, svc in services.items()],
            }))
            started.append(Proc([binary("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log"))
            prometheus, alertmanager = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}"
            wait_for(lambda: ready(f"{alertmanager}/-/ready"), timeout=60, what="Alertmanager ready")
            wait_for(lambda: ready(f"{prometheus}/-/ready"), timeout=60, what="Prometheus ready")
            yield services, prometheus, broker, webhook
        finally:
            for proc in reversed(started):
                proc.stop()
            for svc in services.values():
                svc.stop()
            webhook.close()


def test_the_production_rules_keep_their_durations() -> None:
    # The e2e copy shortens `for:`; production pages on a service down after 2 minutes
    rules = {r["alert"]: r for g in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
             for r in g["rules"]}
    assert rules["ComplaintsServiceDown"]["for"] == "2m"
    assert "for" not in rules["MajorComplaintDeadlineBreached"]
    assert "for" not in rules["ComplaintsDeadLettered"]
    shortened = yaml.safe_load(short_for(ALERTS.read_text(encoding="utf-8")))["groups"]
    assert {r.get("for") for g in shortened for r in g["rules"]} <= {TEST_FOR, None}
    assert [r["expr"] for g in shortened for r in g["rules"]] == [r["expr"] for r in rules.values()]


@pytest.mark.timeout(600)
def test_a_major_breach_a_dead_letter_and_a_killed_service_reach_the_webhook(
        monitored: tuple[dict[str, Service], str, str, Webhook]) -> None:
    services, prometheus, broker, webhook = monitored
    # Given Prometheus scraping the three services (the monitor's series among them)
    wait_for(lambda: len([r for r in query(prometheus, 'up{job=~"complaints-.*"} == 1')]) == len(SERVICES),
             timeout=60, what="every service scraped and up")

    # When a major complaint (a fire, an injury) is registered and nobody acts on it
    email = f"Li.Na.{uuid.uuid4().hex[:8]}@Example.com"
    status, body = post_inbound(f"http://127.0.0.1:{services['intake'].port}", "web_form", {
        "description": "The heater caught fire and my son was burned on his hand.", "email": email})
    assert status == 202, body
    posted = time.monotonic()
    # Then its missed deadlines page within a minute, named by milestone
    page = wait_for(lambda: webhook.firing("MajorComplaintDeadlineBreached", severity="critical"),
                    timeout=REACH, what="the major breach at the webhook")
    reached = time.monotonic() - posted
    assert page[0]["labels"]["milestone"] in {"acknowledge", "respond", "dispatch"}
    assert "major complaint(s) breached" in page[0]["annotations"]["description"]
    # (scraped at 0 before the breach: the series existed from the monitor's start)
    milestone = page[0]["labels"]["milestone"]
    assert query(prometheus, "min_over_time(complaints_sla_milestones_total{severity=\"major\", "
                             f'outcome="breached", milestone="{milestone}"}}[5m]) == 0')

    # When a record that is not JSON arrives on complaints.inbound
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send("complaints.inbound", key=b"k", value=b"\xff\xfe not json at all")
    producer.flush()
    producer.close()
    sent = time.monotonic()
    # Then the dead letter opens a ticket within a minute, naming the service, topic and error
    letter = wait_for(lambda: webhook.firing("ComplaintsDeadLettered", service="intake",
                                             topic="complaints.inbound"),
                      timeout=REACH, what="the dead letter at the webhook")
    dead_lettered = time.monotonic() - sent
    assert letter[0]["labels"]["severity"] == "warning" and letter[0]["labels"]["error"]

    # When the router is killed (kill -9)
    assert not webhook.firing("ComplaintsServiceDown", service="router")
    services["router"].stop(kill=True)
    killed = time.monotonic()
    # Then "no router instance is up" pages within a minute
    down = wait_for(lambda: webhook.firing("ComplaintsServiceDown", service="router"),
                    timeout=REACH, what="the router down at the webhook")
    assert down[0]["labels"]["severity"] == "critical"
    noticed = time.monotonic() - killed

    # And nothing the webhook received names the customer
    assert all(email.lower() not in body.lower() for body in webhook.bodies)
    print(f"reached the webhook: major breach {reached:.1f}s after registration, dead letter "
          f"{dead_lettered:.1f}s after it was produced, router down {noticed:.1f}s after kill -9")
