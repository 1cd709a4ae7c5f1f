"""The fakes implement their ports' Protocols exactly: mypy --strict checks every one.

Each fake module ends with assignments such as ``_cases: Cases = DictCases()``; a fake whose
method lost a parameter, or took another type, fails here (no server needed).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_fake_is_checked_against_its_protocol() -> None:
    # Given the fakes package; When mypy checks it strictly
    run = subprocess.run([sys.executable, "-m", "mypy", "--strict",  # noqa: S603
                          "--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "tests" / "fakes")],
                         cwd=ROOT, capture_output=True, text=True, timeout=170, check=False)
    # Then it finds nothing
    assert run.returncode == 0, run.stdout + run.stderr
    # and every fake module states its Protocol conformance (the lines mypy checks)
    stated = re.compile(r"^_\w+: \w+ = \w+\(", re.MULTILINE)
    for module in (ROOT / "tests" / "fakes").glob("*.py"):
        if module.name != "__init__.py":
            assert stated.search(module.read_text()), f"{module.name} states no Protocol"
