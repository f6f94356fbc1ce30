"""The state store: what has been applied (objects, revisions) and the locks that serialise
writers. SQLite by default, PostgreSQL for a shared store."""
