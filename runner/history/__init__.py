"""Run history: one JSON file per run, kept beside the state store."""
