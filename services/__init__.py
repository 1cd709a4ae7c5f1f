"""The pipeline's services: intake, router, sla_monitor, notifier."""
