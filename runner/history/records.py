"""A run's record: the JSON history file of one run, and the statuses it can be in."""

from __future__ import annotations

QUEUED, NOT_STARTED = "queued", "not_started"
