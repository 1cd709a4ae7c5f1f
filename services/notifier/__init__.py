"""Notifier: tells the customer (acknowledgement, result) and records every send."""
