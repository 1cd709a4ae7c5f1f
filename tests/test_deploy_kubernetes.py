"""The Kubernetes manifests (deploy/kubernetes): every document valid, and agreeing with the code.

Core kinds are validated by kubernetes-validate against the upstream Kubernetes schemas, strict
(an unknown field fails), of the oldest and the newest version below. KEDA's ScaledObject and
Strimzi's KafkaTopic, for which no schema package exists, against deploy/kubernetes/schemas/
(jsonschema). The truth the manifests are checked against is the code: each service's app as
build() makes it (consumer group, topics), its settings class (port, env names) and
schemas/topics.py; the archive's database is a PostgreSQL named in its own Secret. No cluster
or broker needed.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from schemas.topics import ALL_TOPICS
from services.__main__ import SERVICES
from services.common.consumer import inputs
from services.common.policy import load_policy
from services.common.settings import load_settings
from services.intake.rebuild import TIMELINE_TOPICS
from services.notifier.settings import NotifierSettings
from services.sla_monitor.settings import SlaMonitorSettings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
FILES = sorted(p.name for p in DEPLOY.glob("*.yaml"))
CRD_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
               ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
               ("kafka.strimzi.io/v1", "KafkaTopic"): "kafkatopic-strimzi-v1.json"}
# the oldest version `kubernetes-validate>=1.30` is sure to ship, and the newest installed
K8S_VERSIONS = sorted({"1.30", kubernetes_validate.latest_version().rsplit(".", 1)[0]})
# Secret values shipped empty on purpose (the service refuses to start until they are set)
OPERATOR_SETS = {"INTAKE_IDENTITY_KEY": "an-operator-chosen-key"}
STAFF_API = ("intake", "archive", "desk")  # the services with endpoints that need a staff token
DAY_MS = 86_400_000
METRICS_PORT = 9100  # every service's /metrics, apart from its HTTP port (config.yaml)
TRANSPORT_SECRET = "complaints-kafka"  # the services' SCRAM user, mounted by every service


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text(encoding="utf-8")) if d is not None]


@functools.cache
def obj(kind: str, name: str) -> dict[str, Any]:
    found = [d for f in FILES if f != "kustomization.yaml" for d in load(f)
             if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def container(name: str) -> dict[str, Any]:
    (c,) = obj("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return dict(c)


def manifest_env(name: str) -> dict[str, str]:
    """The environment the service's container gets: envFrom ConfigMaps and Secrets, then env."""
    env: dict[str, str] = {}
    for source in container(name)["envFrom"]:
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        doc = obj(kind, (source.get("configMapRef") or source["secretRef"])["name"])
        env.update(doc.get("data") or doc.get("stringData") or {})
    env.update({e["name"]: e["value"] for e in container(name).get("env", [])})
    return env


FILE_VARIABLES = ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE", "REDIS_SSL_CA_CERTS",
                  "REDIS_SSL_CERTFILE", "REDIS_SSL_KEYFILE")


def mounted_files(name: str, scratch: Path) -> dict[str, Path]:
    """Each certificate-file variable of the service: the path must lie in a Secret volume of
    the pod that holds that key; returned as a scratch file of the same name (for settings)."""
    env, c = manifest_env(name), container(name)
    volumes = {v["name"]: v for v in obj("Deployment", name)["spec"]["template"]["spec"]["volumes"]}
    out = {}
    for var in FILE_VARIABLES:
        if var not in env:
            continue
        path = Path(env[var])
        (mount,) = [m for m in c["volumeMounts"] if path.parent == Path(m["mountPath"])] or [None]
        assert mount is not None, f"{name}: {var}={path} is in no volume of the pod"
        assert mount.get("readOnly") is True, f"{name}: {mount['mountPath']} must be read-only"
        secret = volumes[mount["name"]].get("secret")
        assert secret, f"{name}: {var} must come from a Secret volume"
        assert path.name in obj("Secret", secret["secretName"])["stringData"], f"{name}: {var}"
        out[var] = scratch / f"{var}-{path.name}"
        out[var].write_text("placeholder", encoding="utf-8")
    return out


def image_entry_point() -> list[str]:
    """The Dockerfile's ENTRYPOINT: the services' own (the image has no tools, no `complaints`)."""
    text = (DEPLOY.parent.parent / "Dockerfile").read_text(encoding="utf-8")
    (line,) = re.findall(r"^ENTRYPOINT (.+)$", text, re.M)
    entry: list[str] = json.loads(line)
    return entry


def bootstrap() -> str:
    return str(obj("ConfigMap", "complaints-config")["data"]["KAFKA_BOOTSTRAP_SERVERS"])


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, set[str], int, type]]:
    """Per service, as the code has it: consumer group, consumed topics, default port, settings class."""
    out = {}
    for name, (app_mod, settings_mod, cls_name) in SERVICES.items():
        cls = getattr(importlib.import_module(settings_mod), cls_name)
        scratch = tmp_path_factory.mktemp(name)  # build() makes its directories
        dirs = {"COMPLAINTS_DATA_DIR": scratch, "NOTIFIER_OUTBOX_DIR": scratch / "outbox", "NOTIFIER_OUTBOX_ENABLED": True,
                "DESK_JWT_SECRET": "a-test-secret-of-at-least-32-characters"}
        known = {f.validation_alias for f in cls.model_fields.values()}
        settings = cls(**{k: str(v) for k, v in dirs.items() if k in known})
        app = importlib.import_module(app_mod).build(settings, load_policy(None))
        # faust's agents or a batch consumer of the service's own (services/common/consumer.py)
        topics = inputs(app)
        # faust's consumer group id is the app id
        out[name] = (app.conf.id, topics, cls.model_fields["http_port"].default, cls)
    return out


@pytest.mark.parametrize("name", [f for f in FILES if f != "kustomization.yaml"])
def test_every_document_validates(name: str) -> None:
    docs, problems = load(name), []
    assert docs
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        schema = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if schema:
            validator = jsonschema.Draft202012Validator(json.loads((DEPLOY / "schemas" / schema).read_text()))
            problems += [f"{where}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                         for e in validator.iter_errors(doc)]
            continue
        for version in K8S_VERSIONS:  # an unknown kind raises SchemaNotFoundError: a failure too
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{where} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
    assert not problems


def test_the_kustomization_lists_every_file() -> None:
    (k,) = load("kustomization.yaml")
    assert (k["apiVersion"], k["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    assert sorted(k["resources"]) == [f for f in FILES if f != "kustomization.yaml"]
    assert "namespace" not in k, "it would move the KafkaTopics out of the Kafka cluster's namespace"


@pytest.mark.parametrize("name", SERVICES)
def test_ports_probes_and_service_agree_with_the_code(name: str, code: dict[str, Any]) -> None:
    port = code[name][2]
    c, pod = container(name), obj("Deployment", name)["spec"]["template"]
    assert c["command"] + c["args"] == [*image_entry_point(), "run", name]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert named == {"http": port, "metrics": METRICS_PORT}
    assert manifest_env(name)["METRICS_PORT"] == str(METRICS_PORT)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz" and named.get(get["port"], get["port"]) == port, probe
    (sp,) = obj("Service", name)["spec"]["ports"]  # the API only: metrics are scraped from the pod
    assert sp["port"] == port and named.get(sp["targetPort"], sp["targetPort"]) == port
    assert obj("Service", name)["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    notes = pod["metadata"]["annotations"]
    assert (notes["prometheus.io/port"], notes["prometheus.io/path"]) == (str(METRICS_PORT), "/metrics")


@pytest.mark.parametrize("name", SERVICES)
def test_pods_are_locked_down_sized_and_have_a_writable_data_dir(name: str) -> None:
    spec, c = obj("Deployment", name)["spec"]["template"]["spec"], container(name)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys(), kind
    empty = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty}
    assert manifest_env(name)["COMPLAINTS_DATA_DIR"] in mounts


@pytest.mark.parametrize("name", SERVICES)
def test_settings_accept_the_manifest_env(name: str, code: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    cls = code[name][3]
    known = {f.validation_alias for f in cls.model_fields.values()}
    env = manifest_env(name)
    assert {k for k in env if not k.startswith("PYTHON")} <= known, "a variable the service does not read"
    for var in known:
        monkeypatch.delenv(var, raising=False)
    # the certificate files live in the pod's Secret volumes: here, files of the same keys
    env = {**env, **{var: str(path) for var, path in mounted_files(name, tmp_path).items()}}
    for var, value in {**env, **{k: v for k, v in OPERATOR_SETS.items() if k in env}}.items():
        monkeypatch.setenv(var, value)
    settings = load_settings(cls)
    assert settings.http_port == code[name][2]
    assert settings.metrics_port == METRICS_PORT


@pytest.mark.parametrize("name", SERVICES)
def test_pdb_and_scaled_object_cover_the_deployment(name: str, code: dict[str, Any]) -> None:
    group, consumed, _, _ = code[name]
    labels = obj("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    pdb = obj("PodDisruptionBudget", name)["spec"]
    assert pdb["minAvailable"] == 1 and pdb["selector"]["matchLabels"].items() <= labels.items()
    if not consumed:  # no consumer group (the desk): no lag to scale on, a fixed count instead
        scaled = [d for f in FILES if f != "kustomization.yaml" for d in load(f)
                  if d["kind"] == "ScaledObject" and d["spec"]["scaleTargetRef"]["name"] == name]
        assert not scaled, f"{name} consumes no topic: a ScaledObject on Kafka lag cannot scale it"
        assert obj("Deployment", name)["spec"]["replicas"] >= 2
        return
    assert "replicas" not in obj("Deployment", name)["spec"], "KEDA's HPA owns the count"
    so = obj("ScaledObject", name)["spec"]
    target = so["scaleTargetRef"]
    assert (target["name"], target.get("kind", "Deployment")) == (name, "Deployment")
    partitions = {t.name: t.partitions for t in ALL_TOPICS}
    triggers = [t["metadata"] for t in so["triggers"]]
    assert {t["type"] for t in so["triggers"]} == {"kafka"}
    assert {t["consumerGroup"] for t in triggers} == {group}
    assert {t["bootstrapServers"] for t in triggers} == {bootstrap()}
    assert sorted(t["topic"] for t in triggers) == sorted(consumed)
    assert 2 <= so["minReplicaCount"] <= so["maxReplicaCount"] <= min(partitions[t] for t in consumed)


def test_the_archive_keeps_its_record_in_the_postgresql_a_secret_names() -> None:
    # Given the archive's container
    from services.archive.database import database_url

    c = container("archive")
    secrets = [s["secretRef"]["name"] for s in c["envFrom"] if "secretRef" in s]
    # Then its database URL (it holds a password) comes from its own Secret only: not from
    # the shared ConfigMap, not written in the manifest
    assert [s for s in secrets if s != TRANSPORT_SECRET] == ["complaints-archive"], \
        "the archive mounts only the Secrets it uses"
    assert "ARCHIVE_DATABASE_URL" in obj("Secret", "complaints-archive")["stringData"]
    assert "ARCHIVE_DATABASE_URL" not in obj("ConfigMap", "complaints-config")["data"]
    assert all(e["name"] != "ARCHIVE_DATABASE_URL" for e in c.get("env", []))
    # And it names a PostgreSQL server and database: unset, the archive would be SQLite in
    # the pod's emptyDir, one per replica and lost at every restart
    url = database_url(manifest_env("archive")["ARCHIVE_DATABASE_URL"])
    assert (url.get_backend_name(), url.drivername) == ("postgresql", "postgresql+psycopg")
    assert url.host and url.database and url.username


def test_the_staff_api_verifies_tokens_with_one_jwks_of_the_identity_provider() -> None:
    # Given the services with staff endpoints, as the manifests configure them
    envs = {name: manifest_env(name) for name in STAFF_API}
    # Then all three verify tokens with the same JWKS URL (https), issuer and audience, no HS256 key
    keys = {(e["DESK_JWKS"], e["DESK_JWT_ISSUER"], e["DESK_JWT_AUDIENCE"]) for e in envs.values()}
    assert len(keys) == 1 and next(iter(keys))[0].startswith("https://")
    assert not any({"DESK_JWT_SECRET", "DESK_JWT_SECRET_FILE"} & e.keys() for e in envs.values())
    # And the desk reads the archive's PostgreSQL through a Secret of its own
    c = container("desk")
    assert [s["secretRef"]["name"] for s in c["envFrom"]
            if "secretRef" in s and s["secretRef"]["name"] != TRANSPORT_SECRET] == ["complaints-desk"]
    assert "ARCHIVE_DATABASE_URL" in obj("Secret", "complaints-desk")["stringData"]


def test_the_containers_run_the_services_entry_point() -> None:
    # Given the image's entry point, When each Deployment's command and args are parsed by
    # the services' own command line, Then each runs its service, with nothing of the tools
    from services.__main__ import parser

    assert image_entry_point() == ["python", "-m", "services"]
    for name in SERVICES:
        args = parser().parse_args(container(name)["args"])
        assert (args.command, args.service) == ("run", name)


def test_kafka_topics_are_the_declared_topics() -> None:
    topics = {d["metadata"]["name"]: d for d in load("topics.yaml")}
    assert {n: d["spec"]["partitions"] for n, d in topics.items()} == {t.name: t.partitions
                                                                       for t in ALL_TOPICS}
    # rebuilds read these from the start: they must outlive the state rebuilt from them
    keep = max(SlaMonitorSettings.model_fields["ttl_days"].default,
               NotifierSettings.model_fields["contact_ttl_days"].default) * DAY_MS
    for name, doc in topics.items():
        spec, cluster = doc["spec"], doc["metadata"]["labels"]["strimzi.io/cluster"]
        assert bootstrap().startswith(f"{cluster}-kafka-bootstrap.{doc['metadata']['namespace']}.svc:"), name
        assert (spec["replicas"], int(spec["config"]["min.insync.replicas"])) == (3, 2), name
        floor = keep if name in {t.name for t in TIMELINE_TOPICS} else 1
        assert int(spec["config"]["retention.ms"]) >= floor, name


# ---- transport security: TLS + SCRAM to Kafka, TLS + ACL user to Redis, network policies --------

REDIS_USERS = ("intake", "router", "sla-monitor", "notifier")  # the services that keep state in Redis
DATABASE_USERS = ("archive", "desk")


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_reaches_kafka_over_tls_with_scram(name: str) -> None:
    env = manifest_env(name)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] in ("SCRAM-SHA-256", "SCRAM-SHA-512")
    # the user and password from a Secret (not the shared ConfigMap), the CA from a Secret volume
    secrets = {s["secretRef"]["name"] for s in container(name)["envFrom"] if "secretRef" in s}
    assert TRANSPORT_SECRET in secrets
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= obj("Secret", TRANSPORT_SECRET)["stringData"].keys()
    assert not {"KAFKA_SASL_PASSWORD", "REDIS_PASSWORD"} & obj("ConfigMap", "complaints-config")["data"].keys()
    assert "KAFKA_SSL_CAFILE" in env  # mounted_files (test_settings_accept_the_manifest_env) checks the file


@pytest.mark.parametrize("name", REDIS_USERS)
def test_the_redis_users_connect_over_tls_as_an_acl_user_with_a_client_certificate(name: str) -> None:
    env = manifest_env(name)
    assert env["REDIS_URL"].startswith("rediss://")
    assert env["REDIS_USERNAME"] and env["REDIS_PASSWORD"]
    assert {"REDIS_SSL_CA_CERTS", "REDIS_SSL_CERTFILE", "REDIS_SSL_KEYFILE"} <= env.keys()


@pytest.mark.parametrize("name", [n for n in SERVICES if n != "desk"])
def test_keda_reads_the_lag_over_the_same_tls_listener_and_user(name: str) -> None:
    for trigger in obj("ScaledObject", name)["spec"]["triggers"]:
        assert (trigger["metadata"]["tls"], trigger["metadata"]["sasl"]) == ("enable", "scram_sha512")
        auth = obj("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]["secretTargetRef"]
        refs = {r["parameter"]: (r["name"], r["key"]) for r in auth}
        assert refs["username"] == (TRANSPORT_SECRET, "KAFKA_SASL_USERNAME")
        assert refs["password"] == (TRANSPORT_SECRET, "KAFKA_SASL_PASSWORD")
        assert refs["ca"][1] in obj("Secret", refs["ca"][0])["stringData"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", "only In is understood here"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _policies() -> list[dict[str, Any]]:
    return [d for d in load("network-policy.yaml") if d["kind"] == "NetworkPolicy"]


def _rules(labels: dict[str, str], kind: str) -> list[dict[str, Any]]:
    """The ingress or egress rules of every policy that selects a pod with ``labels``."""
    kind_key = "ingress" if kind == "Ingress" else "egress"
    return [rule for p in _policies() if kind in p["spec"]["policyTypes"]
            and _selects(p["spec"]["podSelector"], labels) for rule in p["spec"].get(kind_key, [])]


def _pod_labels(name: str) -> dict[str, str]:
    return dict(obj("Deployment", name)["spec"]["template"]["metadata"]["labels"])


def test_the_namespace_denies_all_traffic_by_default() -> None:
    deny = [p for p in _policies() if p["spec"]["podSelector"] == {}
            and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, "no default-deny NetworkPolicy"
    assert all(p["metadata"]["namespace"] == "complaints" for p in _policies())
    # every rule names its ports: nothing is opened wholesale
    for p in _policies():
        for rule in p["spec"].get("ingress", []) + p["spec"].get("egress", []):
            assert rule.get("ports"), p["metadata"]["name"]


@pytest.mark.parametrize("name", SERVICES)
def test_a_service_is_reachable_only_on_its_metrics_port_and_public_apis_on_theirs(name: str) -> None:
    ingress = _rules(_pod_labels(name), "Ingress")
    ports = {(port["port"], json.dumps(rule["from"], sort_keys=True)) for rule in ingress for port in rule["ports"]}
    metrics = {src for port, src in ports if port == "metrics"}
    assert metrics and all("prometheus" in src for src in metrics), "metrics: Prometheus only"
    public = {src for port, src in ports if port == "http"}
    if name in ("intake", "desk"):  # the public APIs, through the ingress controller only
        assert public and all("ingress" in src for src in public)
    else:
        assert not public, f"{name}'s HTTP port must not be open to anyone"
    assert {port for port, _ in ports} <= {"http", "metrics"}


@pytest.mark.parametrize("name", SERVICES)
def test_a_service_may_reach_only_what_it_uses(name: str) -> None:
    egress = _rules(_pod_labels(name), "Egress")
    reached = {port["port"] for rule in egress for port in rule["ports"]}
    assert 9093 in reached and bootstrap().endswith(":9093"), "Kafka's TLS listener"
    assert 9092 not in reached, "Kafka's plaintext listener"
    assert (6380 in reached) == (name in REDIS_USERS), "Redis (TLS port)"
    assert (5432 in reached) == (name in DATABASE_USERS), "PostgreSQL"
    assert 53 in reached  # DNS
    assert not any(rule.get("to") is None and port["port"] not in (443, 465, 587)
                   for rule in egress for port in rule["ports"]), "only HTTPS and mail go anywhere"
    # Redis and PostgreSQL let exactly their users in
    for server, users, port in (("redis", REDIS_USERS, 6380), ("postgres", DATABASE_USERS, 5432)):
        rules = _rules({"app.kubernetes.io/name": server}, "Ingress")
        allowed = any(_selects(src["podSelector"], _pod_labels(name)) and
                      port in {p["port"] for p in rule["ports"]} for rule in rules for src in rule["from"])
        assert allowed == (name in users), (server, name)
