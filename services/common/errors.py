"""Small exceptions that steer the consumer boundary."""

from __future__ import annotations


class ConfigError(Exception):
    """Configuration is invalid; the message names file, field and problem."""


class Rejected(Exception):
    """Input is permanently bad: dead-letter it with this reason and go on."""


class Retry(Exception):
    """The effect cannot be done yet (missing state, busy dependency); try again later."""

    def __init__(self, reason: str, *, delay: float = 0.5) -> None:
        super().__init__(reason)
        self.delay = delay
