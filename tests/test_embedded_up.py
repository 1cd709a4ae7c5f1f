"""`complaints up` starts its own broker, brings the five services up, and stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
import redis

SERVICE_PORTS = ("INTAKE_HTTP_PORT", "ROUTER_HTTP_PORT", "SLA_MONITOR_HTTP_PORT",
                 "NOTIFIER_HTTP_PORT", "ARCHIVE_HTTP_PORT")
UP_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Output:
    """Collects a process's output lines in a background thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def close(self, proc: subprocess.Popen[str]) -> None:
        self._thread.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()

    def wait_for(self, text: str, *, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(text in line for line in self.lines),
                                       timeout=timeout)

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_up_embeds_a_broker_serves_health_and_stops_without_leftovers(
        tmp_path: Path, redis_url: str) -> None:
    # Given an environment whose broker address answers nothing (so `up` must embed tansu),
    # a Redis that answers (the machine's or the session's own) with no prefix set (so the
    # run takes one of its own), and free ports for the five services
    ports = {name: free_port() for name in SERVICE_PORTS}
    env = {**os.environ, **{name: str(port) for name, port in ports.items()},
           "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
           "REDIS_URL": redis_url,
           "COMPLAINTS_DATA_DIR": str(tmp_path / "data")}
    for name in ("KAFKA_REBALANCE_TIMEOUT", "REDIS_PREFIX"):
        env.pop(name, None)
    prefix = f"complaints:run-{uuid.uuid4().hex[:8]}:"  # replaced by the run's own below

    # When `complaints up` runs until every service is healthy
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "up"], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(proc)
    children: list[psutil.Process] = []
    try:
        healthy = output.wait_for("all services healthy", timeout=UP_TIMEOUT)
        assert healthy, f"not healthy within {UP_TIMEOUT} s:\n{output.text()}"
        children = psutil.Process(proc.pid).children(recursive=True)
        # a fresh in-memory broker: the run's Redis keys live under a prefix of its own
        found = re.search(r"key prefix (complaints:run-[0-9a-f]{8}:)", output.text())
        assert found, output.text()
        prefix = found.group(1)
        with redis.Redis.from_url(env["REDIS_URL"]) as client:
            client.set(f"{prefix}state-of-this-run", "x")
        url = f"http://127.0.0.1:{ports['INTAKE_HTTP_PORT']}/healthz"
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310
            status = reply.status

        # And it is interrupted as by Ctrl-C
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output.close(proc)
        for child in children:  # a failed test must not leave the stack running either
            if child.is_running():
                child.kill()
        leftovers = []
        with redis.Redis.from_url(env["REDIS_URL"]) as client:  # only this run's own keys
            for key in client.scan_iter(match=f"{prefix}*"):
                leftovers.append(key)
                client.delete(key)

    # Then the stack was up, it stopped cleanly, and no process is left behind
    assert status == 200
    assert len(children) >= 6, f"expected broker and five services, got {children}"
    assert code == 0, output.text()
    alive = [child for child in children if child.is_running()]
    assert not alive, f"left behind: {alive}"
    assert "embedded" in output.text()
    assert leftovers == [], "the run left keys behind"
    assert (tmp_path / "data" / "logs" / "intake.log").exists()
