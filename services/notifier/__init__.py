"""Notifier: tells customers and staff what each event owes them, through durable queues per
transport, and records every step on complaints.notifications."""
