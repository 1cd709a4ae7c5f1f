"""Apache Kafka (KRaft, one node) without Docker: fetch the jars with Maven, start, stop.

``ensure_jars()`` runs ``mvn dependency:copy-dependencies`` on this folder's ``pom.xml`` once per
version into a cache folder (``~/.cache/complaints/kafka-<version>``, or
``$COMPLAINTS_KAFKA_CACHE/kafka-<version>``) and returns it: the broker's classpath. Nothing is
committed but the recipe. ``KafkaBroker`` formats the KRaft storage under its ``log_dir`` once,
writes ``server.properties`` and a quiet log4j2 configuration there, runs ``kafka.Kafka`` with
``java -cp`` and waits until the broker answers. Used by ``complaints up --broker kafka`` and the
tests (``COMPLAINTS_TEST_BROKER=kafka``); not part of the service image.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

DEFAULT_VERSION = "4.1.1"
"""The Apache Kafka version fetched and run unless ``COMPLAINTS_KAFKA_VERSION`` names another;
keep deploy/compose.yaml on the same one."""
POM = Path(__file__).with_name("pom.xml")
INSTALL_HINT = ("install a JDK (17 or newer) and Maven, e.g. `apt-get install openjdk-17-jre-headless "
                "maven`, or set JAVA_HOME")
READY_MARKER = "Kafka Server started"
"""What ``kafka.server.KafkaRaftServer`` logs once it serves (server.log, see LOG4J2)."""
STOP_TIMEOUT = 30.0
COMPLETE = ".complete"  # written last into a cache folder whose download finished

LOG4J2 = """\
# written by tools/kafka_broker: warnings to server.log, start-up and shutdown lines too
status = warn
# Kafka logs its own shutdown from a shutdown hook: log4j's must not close the file first
shutdownHook = disable
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.shutdown.name = kafka.server.BrokerServer
logger.shutdown.level = INFO
"""


class BrokerError(RuntimeError):
    """The broker cannot be fetched or started; the message says what to do."""


def kafka_version(version: str | None = None) -> str:
    """``version``, else ``$COMPLAINTS_KAFKA_VERSION``, else DEFAULT_VERSION."""
    chosen = version or os.environ.get("COMPLAINTS_KAFKA_VERSION") or DEFAULT_VERSION
    if not chosen.replace(".", "").replace("-", "").isalnum():
        raise BrokerError(f"COMPLAINTS_KAFKA_VERSION: {chosen!r} is not a version")
    return chosen


def cache_dir(version: str | None = None) -> Path:
    """Where the jars of ``version`` live (not necessarily fetched yet)."""
    base = os.environ.get("COMPLAINTS_KAFKA_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "complaints"
    return root / f"kafka-{kafka_version(version)}"


def java_bin() -> str:
    """The ``java`` of ``$JAVA_HOME``, else the one on PATH; BrokerError naming the fix."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise BrokerError(f"Apache Kafka needs Java, and no `java` is on PATH: {INSTALL_HINT}")
    return found


def ensure_jars(version: str | None = None) -> Path:
    """The classpath folder of Apache Kafka ``version``; fetched with Maven the first time.

    Safe to call from several processes at once (a lock file beside the cache folder). Raises
    BrokerError naming what is missing (java, mvn) and how to install it, or Maven's last lines.
    """
    target = cache_dir(version)
    if (target / COMPLETE).is_file():
        return target
    java_bin()  # the jars are useless without it: say so before a long download
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(f"fetching Apache Kafka needs Maven, and no `mvn` is on PATH: {INSTALL_HINT}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / COMPLETE).is_file():  # another process fetched it meanwhile
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            argv = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
                    f"-Dkafka.version={kafka_version(version)}", f"-DoutputDirectory={staging}"]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
            if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
                raise BrokerError(f"`mvn dependency:copy-dependencies` for Apache Kafka "
                                  f"{kafka_version(version)} failed (exit {done.returncode}):\n{tail}")
            (staging / COMPLETE).write_text(f"{kafka_version(version)}\n", encoding="utf-8")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _die_with_parent() -> None:
    """In the child (Linux): SIGTERM when the process that started it dies, even by SIGKILL, so
    a killed test run leaves no broker behind."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: stop() / kill() only
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_id() -> str:
    """A Kafka Uuid as ``kafka-storage random-uuid`` prints it: URL-safe base64, no padding, and
    (as Kafka's ``Uuid.randomUuid`` makes sure) not starting with "-", which the storage tool's
    argument parser would take for an option (one id in 64 did: the format step failed)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


class KafkaBroker:
    """One Apache Kafka node (broker and KRaft controller in one JVM) with its data in ``log_dir``.

    ``listeners``: the client listeners (default ``PLAINTEXT://127.0.0.1:<port>``), advertised as
    given; the first is the inter-broker one. The controller listener (``CONTROLLER``, plaintext,
    ``controller_port`` or a free port) is added. ``extra_properties`` override any setting written
    (TLS / SASL settings, ``listener.security.protocol.map`` for names of your own, ...).
    The data survives ``stop()`` / ``kill()``: ``start()`` again on the same ``log_dir`` reopens it.
    """

    def __init__(self, log_dir: Path, port: int, *, controller_port: int | None = None,
                 extra_properties: dict[str, str] | None = None, listeners: str | None = None,
                 heap: str = "512m") -> None:
        self.log_dir = Path(log_dir)
        self.port = port
        self.controller_port = controller_port
        self.extra_properties = dict(extra_properties or {})
        self.listeners = listeners or f"PLAINTEXT://127.0.0.1:{port}"
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # server.log's size before this start: its marker counts, older ones not

    @property
    def bootstrap(self) -> str:
        """host:port of the client listener on ``port``."""
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.log_dir / "data"

    @property
    def server_log(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def properties(self, controller_port: int) -> dict[str, str]:
        """The settings written to server.properties: a single dev/test node."""
        names = [item.split("://", 1)[0] for item in self.listeners.split(",") if item.strip()]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": f"{self.listeners},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": self.listeners,
            "inter.broker.listener.name": names[0],
            "listener.security.protocol.map": ",".join(
                [f"{n}:{n}" for n in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")]
                + ["CONTROLLER:PLAINTEXT"]),
            "log.dirs": str(self.data_dir.resolve()),
            # schemas/topics.py: every topic has PARTITIONS (6); faust's own topics say theirs
            "num.partitions": "6",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # a test box: a group forms at once, the first rebalance does not wait for members
            "group.initial.rebalance.delay.ms": "0",
            # the tests and `complaints up` run consumers with 3 s sessions (KAFKA_REBALANCE_TIMEOUT)
            "group.min.session.timeout.ms": "1000",
            # every topic is made by services.common.kafka.ensure_topics or by faust itself
            "auto.create.topics.enable": "false",
            # one node: no replica to hand leadership to, so a stop need not ask the controller first
            "controlled.shutdown.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        props.update(self.extra_properties)
        return props

    def _write_config(self, controller_port: int) -> Path:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.log_dir / "server.properties"
        lines = [f"{k}={v}" for k, v in self.properties(controller_port).items()]
        config.write_text("# written by tools/kafka_broker at each start\n" + "\n".join(lines) + "\n",
                          encoding="utf-8")
        (self.log_dir / "log4j2.properties").write_text(
            LOG4J2.format(log=self.server_log.resolve()), encoding="utf-8")
        return config

    def _java(self, jars: Path, main: str, *args: str, heap: str, tool: bool = False) -> list[str]:
        # a one-shot tool: no optimising compiler, the serial collector (starts faster on 2 cores)
        gc = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"] if tool else \
            ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        return [java_bin(), f"-Xmx{heap}", "-Xms64m", *gc, "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={self.log_dir.resolve()}",
                f"-Dlog4j2.configurationFile={(self.log_dir / 'log4j2.properties').resolve()}",
                "-cp", f"{jars}/*", main, *args]

    def _format(self, jars: Path, config: Path) -> None:
        """Format the KRaft storage unless an earlier start did (meta.properties is there)."""
        if (self.data_dir / "meta.properties").is_file():
            return
        argv = self._java(jars, "kafka.tools.StorageTool", "format", "--cluster-id", _cluster_id(),
                          "--config", str(config), "--ignore-formatted", heap="256m", tool=True)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise BrokerError(f"formatting the Kafka storage in {self.data_dir} failed "
                              f"(exit {done.returncode}): {(done.stdout + done.stderr).strip()[-2000:]}")

    def prepare(self) -> list[str]:
        """Fetch the jars if needed, write the configuration, format the storage once; the
        command that runs the broker (``start`` runs it; a supervisor of its own may instead,
        then polls ``ready``)."""
        jars = ensure_jars()
        controller_port = self.controller_port or _free_port()
        config = self._write_config(controller_port)
        self._format(jars, config)
        self._log_offset = self.server_log.stat().st_size if self.server_log.exists() else 0
        return self._java(jars, "kafka.Kafka", str(config), heap=self.heap)

    def start(self, timeout: float = 60) -> None:
        """``prepare``, start the JVM, wait until the broker answers (BrokerError if it does not)."""
        if self._proc is not None and self._proc.poll() is None:
            raise BrokerError(f"the broker in {self.log_dir} is running already")
        argv = self.prepare()
        with (self.log_dir / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def ready(self) -> bool:
        """Whether the broker started since ``prepare`` logged that it serves and, on a
        PLAINTEXT listener at ``port``, answers a metadata request."""
        plaintext = {f"PLAINTEXT://{host}:{self.port}" for host in ("127.0.0.1", "localhost")}
        return self._started(self._log_offset) and (
            not plaintext & {item.strip() for item in self.listeners.split(",")} or self._answers())

    def _started(self, offset: int) -> bool:
        try:
            with self.server_log.open("rb") as log:
                log.seek(offset)
                return READY_MARKER.encode() in log.read()
        except FileNotFoundError:
            return False

    def _answers(self) -> bool:
        """Whether a PLAINTEXT client listener on ``port`` answers a metadata request."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=[self.bootstrap], client_id="kafka-broker-ready",
                                     request_timeout_ms=3000)
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(f"Apache Kafka exited with {self._proc.returncode} while starting; "
                                  f"see {self.server_log} and {self.log_dir / 'stdout.log'}:\n"
                                  + self._log_tail())
            if self.ready():
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"Apache Kafka did not answer on {self.bootstrap} within {timeout:.0f} s; "
                                  f"see {self.server_log}:\n" + self._log_tail())
            time.sleep(0.2)

    def _log_tail(self, lines: int = 15) -> str:
        texts = []
        for path in (self.log_dir / "stdout.log", self.server_log):
            with contextlib.suppress(OSError):
                texts += path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "\n".join(texts)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait for the clean shutdown; SIGKILL after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL, as a crash would: the next start recovers the logs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(timeout=10)

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
