"""The contract suite's fixtures: `mem` (a memory source), `sync` (a job run in this process)."""

from tests.contract.conftest import mem, state, sync  # noqa: F401
