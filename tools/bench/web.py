"""HTTP for `complaints bench`: signed web form POSTs over keep-alive connections, and
intake's health."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

from services.intake import auth
from tools.bench import BenchError
from tools.bench import report as rpt

HTTP_TIMEOUT = 30.0  # seconds one POST may take before it counts as failed


class Answer(NamedTuple):
    """One POST: HTTP status (0: no answer), perf_counter start and end, what went wrong."""

    status: int
    started: float
    ended: float
    detail: str



class Poster:
    """One keep-alive connection to intake's web_form endpoint; each POST signed (v2, a nonce of
    its own) with ``secret``, the web_form channel's (key id, secret); a connection that fails
    is closed and the next POST opens a fresh one."""

    def __init__(self, url: str, secret: tuple[str, bytes] | None) -> None:
        self.parts = urlsplit(url)
        cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        self.conn = cls(self.parts.hostname or "127.0.0.1", self.parts.port, timeout=HTTP_TIMEOUT)
        self.secret = secret

    def post(self, body: bytes) -> tuple[int, bytes, str]:
        """(status, body, "") of the answer, or (0, b"", the exception's name) without one."""
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            headers.update(auth.sign(self.secret[1], body, key_id=self.secret[0], method="POST",
                                     path=self.parts.path, channel="web_form",
                                     content_type=headers["Content-Type"], now=time.time()))
        try:
            self.conn.request("POST", self.parts.path, body=body, headers=headers)
            reply = self.conn.getresponse()
            return reply.status, reply.read(), ""
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()  # the next request opens a fresh connection
            return 0, b"", type(exc).__name__

    def close(self) -> None:
        self.conn.close()


def post_all(url: str, bodies: Sequence[bytes], secret: tuple[str, bytes] | None, concurrency: int
              ) -> list[Answer]:
    """POST every body from ``concurrency`` threads, one keep-alive connection each (Poster)."""
    work: Iterator[bytes] = iter(bodies)
    lock = threading.Lock()
    answers: list[Answer] = []

    def worker() -> None:
        poster = Poster(url, secret)
        mine: list[Answer] = []
        try:
            while True:
                with lock:
                    body = next(work, None)
                if body is None:
                    break
                start = time.perf_counter()
                status, raw, error = poster.post(body)
                mine.append(Answer(status, start, time.perf_counter(),
                                   error or rpt.answer_detail(status, raw)))
        finally:
            poster.close()
            with lock:
                answers.extend(mine)

    threads = [threading.Thread(target=worker, name=f"bench-http-{i}", daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def check_healthy(base_url: str) -> None:
    """Raise BenchError unless intake's /healthz answers 200."""
    parts = urlsplit(base_url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        conn.request("GET", parts.path + "/healthz")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"intake does not answer at {base_url}: {exc}") from None
    finally:
        conn.close()
    if status != 200:
        raise BenchError(f"intake at {base_url} is not healthy: /healthz answered {status}")

