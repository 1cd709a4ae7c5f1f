"""One fake per port, each keeping faith with its real adapter.

Every fake implements its port's Protocol (mypy checks it: tests/test_fakes_typecheck.py)
and the contract tests (tests/test_contract_*.py) run the same assertions against the fake
and the Redis adapter, so a fake cannot drift from the real thing.
"""

from tests.fakes.common import DictRebuildable, FixedClock, RecordingPublisher
from tests.fakes.intake import DictRegistrations, DictRevisits, DictTimelines
from tests.fakes.notifier import CountingTransport, DictCustomers, DictOutbox
from tests.fakes.router import DictCases, DictFirstContacts
from tests.fakes.sla_monitor import DictFacts, StaticTopics

__all__ = ["CountingTransport", "DictCases", "DictCustomers", "DictFacts", "DictFirstContacts",
           "DictOutbox", "DictRebuildable", "DictRegistrations", "DictRevisits", "DictTimelines", "FixedClock",
           "RecordingPublisher", "StaticTopics"]
