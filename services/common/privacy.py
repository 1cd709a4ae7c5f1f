"""Personal data shown to people who need only a hint of it (masked contact addresses)."""

from __future__ import annotations


def mask(address: str) -> str:
    """Hide most of an address: a***@example.com, +86*******8000."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return address[:3] + "*" * max(len(address) - 7, 0) + address[-4:] if len(address) > 7 else "***"
