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
from services.common.policy import load_policy
from services.common.settings import load_settings
from services.intake.rebuild import TIMELINE_TOPICS
from services.notifier.settings import NotifierSettings
from services.sla_monitor.settings import SlaMonitorSettings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
FILES = sorted(p.name for p in DEPLOY.glob("*.yaml"))
CRD_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
               ("kafka.strimzi.io/v1", "KafkaTopic"): "kafkatopic-strimzi-v1.json"}
# the oldest version `kubernetes-validate>=1.30` is sure to ship, and the newest installed
K8S_VERSIONS = sorted({"1.30", kubernetes_validate.latest_version().rsplit(".", 1)[0]})
# Secret values shipped empty on purpose (the service refuses to start until they are set)
OPERATOR_SETS = {"INTAKE_IDENTITY_KEY": "an-operator-chosen-key"}
STAFF_API = ("intake", "archive", "desk")  # the services with endpoints that need a staff token
DAY_MS = 86_400_000


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
    return c


def manifest_env(name: str) -> dict[str, str]:
    """The environment the service's container gets: envFrom ConfigMaps and Secrets, then env."""
    env: dict[str, str] = {}
    for source in container(name)["envFrom"]:
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        doc = obj(kind, (source.get("configMapRef") or source["secretRef"])["name"])
        env.update(doc.get("data") or doc.get("stringData") or {})
    env.update({e["name"]: e["value"] for e in container(name).get("env", [])})
    return env


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
        topics = {t for agent in app.agents.values() for t in agent.channel.topics}
        # the archive reads with a consumer of its own (services/archive/consumer.py), same group
        topics |= {s.name for s in getattr(getattr(app, "batch_consumer", None), "specs", ())}
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
def test_ports_probes_and_service_agree_with_the_code(name: str, code: dict) -> None:
    port = code[name][2]
    c, pod = container(name), obj("Deployment", name)["spec"]["template"]
    assert c["command"] + c["args"] == [*image_entry_point(), "run", name]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert named == {"http": port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz" and named.get(get["port"], get["port"]) == port, probe
    (sp,) = obj("Service", name)["spec"]["ports"]
    assert sp["port"] == port and named.get(sp["targetPort"], sp["targetPort"]) == port
    assert obj("Service", name)["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    notes = pod["metadata"]["annotations"]
    assert (notes["prometheus.io/port"], notes["prometheus.io/path"]) == (str(port), "/metrics")


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
def test_settings_accept_the_manifest_env(name: str, code: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = code[name][3]
    known = {f.validation_alias for f in cls.model_fields.values()}
    env = manifest_env(name)
    assert {k for k in env if not k.startswith("PYTHON")} <= known, "a variable the service does not read"
    for var in known:
        monkeypatch.delenv(var, raising=False)
    for var, value in {**env, **{k: v for k, v in OPERATOR_SETS.items() if k in env}}.items():
        monkeypatch.setenv(var, value)
    assert load_settings(cls).http_port == code[name][2]


@pytest.mark.parametrize("name", SERVICES)
def test_pdb_and_scaled_object_cover_the_deployment(name: str, code: dict) -> None:
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
    assert secrets == ["complaints-archive"], "the archive mounts only the Secret it uses"
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
    assert [s["secretRef"]["name"] for s in c["envFrom"] if "secretRef" in s] == ["complaints-desk"]
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
