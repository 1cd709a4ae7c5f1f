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



def post_all(url: str, bodies: Sequence[bytes], secret: tuple[str, bytes] | None, concurrency: int
              ) -> list[Answer]:
    """POST every body from ``concurrency`` threads, one keep-alive connection each; each request
    signed (v2, a nonce of its own) with ``secret``, the web_form channel's (key id, secret)."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    work: Iterator[bytes] = iter(bodies)
    lock = threading.Lock()
    answers: list[Answer] = []

    def worker() -> None:
        conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=HTTP_TIMEOUT)
        mine: list[Answer] = []
        try:
            while True:
                with lock:
                    body = next(work, None)
                if body is None:
                    break
                headers = {"Content-Type": "application/json"}
                if secret is not None:
                    headers.update(auth.sign(secret[1], body, key_id=secret[0], method="POST",
                                             path=parts.path, channel="web_form",
                                             content_type=headers["Content-Type"], now=time.time()))
                start = time.perf_counter()
                try:
                    conn.request("POST", parts.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    raw = reply.read()
                    mine.append(Answer(reply.status, start, time.perf_counter(),
                                       rpt.answer_detail(reply.status, raw)))
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # the next request opens a fresh connection
                    mine.append(Answer(0, start, time.perf_counter(), type(exc).__name__))
        finally:
            conn.close()
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

