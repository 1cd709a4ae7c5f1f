"""`complaints bench`: drive complaints through the running stack and print figures.

run.py (the command), load.py (the synthetic load), kafka.py and web.py (the I/O),
report.py (the pure figures and reports).
"""


class BenchError(RuntimeError):
    """The run cannot go on: topics missing, records not acknowledged or not read back."""
