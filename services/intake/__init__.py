"""Intake: every channel in, one canonical, registered complaint out."""
