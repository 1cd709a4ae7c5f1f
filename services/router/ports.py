"""What the router needs from outside: only a Publisher (services.common.ports) so far.

Ownership of repeat complaints and handler loads (issue 4) will add a store here.
"""

from __future__ import annotations

from services.common.ports import Clock, Publisher

__all__ = ["Clock", "Publisher"]
