"""SLA monitor: watches every deadline, reports milestones met and breaches, once each."""
