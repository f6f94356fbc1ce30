"""Definitions: YAML documents in `jobs.d/` and `connections.d/`, loaded with the line of every
key and validated into Pydantic models."""
