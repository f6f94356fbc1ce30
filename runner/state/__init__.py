"""The state store: what has been applied (objects, revisions), what runs need between runs
(pointers, digests, the run index), the locks that serialise writers, and operators' runtime
switches. SQLite by default, PostgreSQL for a shared store.

`store` is the facade (`StateStore` for writers, `StateReader` for plans and status); each
other module owns one concern over the shared `database`: `objects`, `tasks`, `locks`,
`switches`, `keys`, `runs`. `schema` holds the live tables, `migrations` one module per
schema version.
"""

import hashlib

# `Objects.state_digest` of a store without objects: what a new folder's plan is made against,
# here so that planning a new folder imports no part of the store (nor SQLAlchemy)
EMPTY_STATE = hashlib.sha256(b"[]").hexdigest()
