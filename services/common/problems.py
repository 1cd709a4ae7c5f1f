"""RFC 9457 problem documents and the bearer challenge, shared by every HTTP listener."""

from __future__ import annotations

from typing import Any

PROBLEM = "application/problem+json"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="complaints"'}  # on every 401 of a staff endpoint


def problem_body(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The body of a problem document (``type`` about:blank: the status says what it is)."""
    return {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
