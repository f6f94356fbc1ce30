"""LOAD DATA LOCAL without the file reader: the server gets only the bytes runner offers.

PyMySQL's `local_infile=True` opens whatever path the server names in its reply to any
statement. A rogue or intercepted server (or a script's `LOAD DATA LOCAL INFILE '/etc/…'`)
would then read the runner host's files and the daemon's environment. Here the capability is
announced (the server refuses LOCAL without it) while each request is answered from memory,
and only when it names the one-time token of runner's own statement.
"""

from __future__ import annotations

import uuid
from typing import Any

from pymysql.connections import Connection, LoadLocalPacketWrapper, MySQLResult
from pymysql.constants import CLIENT
from pymysql.err import OperationalError

_REFUSED = 2068  # CR_LOAD_DATA_LOCAL_INFILE_REJECTED, as MySQL's own client says it
_PACKET = 64 << 10  # bytes of a data packet (far below any max_allowed_packet)


class LocalFileRefused(OperationalError):
    """The server asked for a local file that runner did not offer for the statement."""


def is_refusal(exc: BaseException) -> bool:
    return isinstance(exc, LocalFileRefused)


def offer(connection: GuardedConnection, data: bytes) -> str:
    """Sets `data` as the answer to the next LOAD DATA LOCAL request; the statement names the
    returned token as its file."""
    token = f"runner-{uuid.uuid4().hex}.tsv"
    connection.offer = (token.encode(), data)
    return token


class _GuardedResult(MySQLResult):
    def _read_load_local_packet(self, first_packet: Any) -> None:
        conn: GuardedConnection = self.connection
        asked = LoadLocalPacketWrapper(first_packet).filename
        offered, conn.offer = conn.offer, None
        served = offered is not None and offered[0] == asked
        try:
            if served:
                data = memoryview(offered[1])
                for start in range(0, len(data), _PACKET):
                    conn.write_packet(data[start : start + _PACKET])
        finally:
            conn.write_packet(b"")  # the end of the data (or none at all)
            ok_packet = conn._read_packet()  # raises the server's error, if any
        if not served:
            name = asked.decode(errors="replace")
            raise LocalFileRefused(
                _REFUSED,
                f"refused the server's request for the local file {name!r}: "
                "runner answers LOAD DATA LOCAL only for its own bulk loads",
            )
        self._read_ok_packet(ok_packet)


class GuardedConnection(Connection):
    offer: tuple[bytes, bytes] | None = None  # (token, bytes) for the next request

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["local_infile"] = False  # PyMySQL's own file reader stays off
        kwargs["client_flag"] = kwargs.get("client_flag", 0) | CLIENT.LOCAL_FILES
        super().__init__(*args, **kwargs)

    def _read_query_result(self, unbuffered: bool = False) -> int:
        """PyMySQL's own, with the guarded result; an offer lasts one statement."""
        self._result = None
        result = _GuardedResult(self)
        try:
            if unbuffered:
                try:
                    result.init_unbuffered_query()
                except BaseException:
                    result.unbuffered_active = False
                    result.connection = None
                    raise
            else:
                result.read()
        finally:
            self.offer = None
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return result.affected_rows


def connect_guarded(dialect: Any, record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> Any:
    """SQLAlchemy's `do_connect` hook: the guarded connection instead of PyMySQL's."""
    return GuardedConnection(*cargs, **cparams)
