"""Counting SMTP and HTTP sinks: real servers that count each message id they receive."""

from __future__ import annotations

import email
import email.policy
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from tests.harness import free_port


class MailSink:
    """An aiosmtpd handler counting Message-IDs (``<notification id@domain>``)."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)  # type: ignore[arg-type]
        with self.lock:
            self.ids[str(msg["Message-ID"])] += 1
        return "250 OK"


def http_sink() -> tuple[ThreadingHTTPServer, Counter[str]]:
    """A JSON gateway on a free port counting Idempotency-Keys (notification ids)."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                seen[self.headers["Idempotency-Key"]] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen
