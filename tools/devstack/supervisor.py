"""The supervisor of `complaints up`: starts children in their own process groups, watches
them, and stops them in order (services first, then the broker and Redis they need)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0
POLL = 0.2


class UpError(Exception):
    """The stack could not be brought up or kept up; the message says why."""


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived."""


@dataclass(frozen=True)
class Child:
    """One started process: its name, the process, and the file its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 30) -> str:
        """The last lines of the child's log."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(f"    | {line}" for line in text.splitlines()[-lines:])


class Supervisor:
    """Starts children, watches them, and stops them: services first, then infrastructure."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.infra: list[Child] = []
        self.services: list[Child] = []
        self.stopping = False
        self.run_prefix: tuple[str, str] | None = None  # (Redis URL, key prefix) to delete at the end

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: ask the main loop to stop."""
        self.stopping = True

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        """Start a child in its own process group, output to ``logs/NAME.log``."""
        path = self.log_dir / f"{name}.log"
        with path.open("wb") as out:
            # Own process group: Ctrl-C reaches only the supervisor, which stops the
            # children in order (services before the broker and Redis they need).
            proc = subprocess.Popen(  # noqa: S603 - our own executables, no shell
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                process_group=0, preexec_fn=_die_with_parent)
        log.debug("started %s pid=%d", name, proc.pid)
        return Child(name, proc, path)

    def check(self) -> None:
        """Raise if stopping was asked for or any child has exited."""
        if self.stopping:
            raise Stopped
        for child in self.infra + self.services:
            code = child.proc.poll()
            if code is not None:
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
                raise UpError(f"{child.name} {how}; the end of {child.log_path}:\n{child.tail()}")

    def wait_for(self, what: str, ready: Callable[[], bool], *, timeout: float) -> None:
        """Poll ``ready`` until it holds; fail at the deadline or when a child dies."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if ready():
                return
            if time.monotonic() > deadline:
                raise UpError(f"{what} not ready within {timeout:.0f} s")
            time.sleep(POLL)

    def shutdown(self) -> None:
        """Stop the services, then the embedded broker and Redis."""
        if self.services or self.infra:
            print("complaints: stopping ...", flush=True)
        _stop_all(self.services)
        _stop_all(self.infra)


def _die_with_parent() -> None:
    """In the child (Linux): receive SIGTERM when the supervisor dies, even by SIGKILL."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: children are stopped by shutdown() only
        pass


def _stop_all(children: list[Child]) -> None:
    for child in children:
        _signal(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            print(f"  {child.name} did not stop within {STOP_TIMEOUT:.0f} s; killing it", flush=True)
            _signal(child, signal.SIGKILL)
            child.proc.wait()
    children.clear()


def _signal(child: Child, sig: signal.Signals) -> None:
    if child.proc.poll() is None:  # not reaped, so the pid (and group) is still ours
        try:
            os.killpg(child.proc.pid, sig)
        except ProcessLookupError:
            pass

