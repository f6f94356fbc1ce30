"""The contract suite's fixtures: `mem` (a memory source), `sync` (a job run in this process),
and real FTP and SFTP servers on loopback (`tests.files.servers`)."""

from tests.contract.conftest import mem, state, sync  # noqa: F401
from tests.files.servers import ftp_server, sftp_server  # noqa: F401
