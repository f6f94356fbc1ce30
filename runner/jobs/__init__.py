"""Job types: how a job of each type runs (today `sync`: its tasks, in order or in parallel)."""
