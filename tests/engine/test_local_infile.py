"""LOAD DATA LOCAL serves runner's own bulk loads only: neither a server runner connects to
nor a YAML author's script can make runner send a file from its host."""

from __future__ import annotations

import socket
import sqlite3
import struct
import threading

import sqlalchemy as sa

from runner import services

_OK = b"\x00\x00\x00\x02\x00\x00\x00"  # OK: no rows, no insert id, autocommit status, no warnings


class RogueServer:
    """Speaks just enough of the MySQL protocol to accept a login and the session's SETs, then
    answers every query with a LOAD DATA LOCAL request for `path`, keeping what comes back."""

    def __init__(self, path: str):
        self.path = path.encode()
        self.received = b""
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(client,), daemon=True).start()

    @staticmethod
    def _send(client: socket.socket, seq: int, payload: bytes) -> None:
        client.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

    @staticmethod
    def _read(client: socket.socket) -> tuple[int, bytes]:
        head = b""
        while len(head) < 4:
            chunk = client.recv(4 - len(head))
            if not chunk:
                raise EOFError
            head += chunk
        length, seq = int.from_bytes(head[:3], "little"), head[3]
        body = b""
        while len(body) < length:
            chunk = client.recv(length - len(body))
            if not chunk:
                raise EOFError
            body += chunk
        return seq, body

    def _session(self, client: socket.socket) -> None:
        # protocol 4.1, secure and plugin auth, local files, database in the login
        caps = 0x0200 | 0x8000 | 0x80000 | 0x0080 | 0x0008
        salt = b"abcdefgh" + b"ijklmnopqrst"
        greeting = (
            b"\x0a5.5.5-10.11.0-MariaDB\x00"
            + struct.pack("<I", 7)
            + salt[:8]
            + b"\x00"
            + struct.pack("<H", caps & 0xFFFF)
            + b"\x21"
            + struct.pack("<H", 2)
            + struct.pack("<H", caps >> 16)
            + bytes([21])
            + b"\x00" * 10
            + salt[8:]
            + b"\x00"
            + b"mysql_native_password\x00"
        )
        try:
            self._send(client, 0, greeting)
            seq, _login = self._read(client)
            self._send(client, seq + 1, _OK)
            while True:
                seq, command = self._read(client)
                if command[:1] != b"\x03":  # anything but COM_QUERY: quit
                    return
                if command[1:5].upper() == b"SET ":  # PyMySQL's session set-up: plain OKs
                    self._send(client, seq + 1, _OK)
                    continue
                self.requests += 1
                self._send(client, seq + 1, b"\xfb" + self.path)
                while True:
                    seq, data = self._read(client)
                    if not data:
                        break
                    self.received += data
                self._send(client, seq + 1, _OK)
        except (EOFError, OSError):
            return
        finally:
            client.close()

    def close(self) -> None:
        self.sock.close()


def test_a_rogue_server_gets_no_file(project, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the runner host's private file\n")
    rogue = RogueServer(str(secret))
    try:
        project.connection("rogue", "mariadb", f"mariadb://root@127.0.0.1:{rogue.port}/test")
        project.connection("dst", "sqlite", "sqlite:///dst.db")
        project.job("pull", "rogue", "dst", "- {name: t, read: {table: items}, write: {table: items}}")
        services.apply(project.ws)
        record = services.run(project.ws, "pull")
    finally:
        rogue.close()
    assert rogue.requests >= 1  # the server did ask
    assert rogue.received == b""  # and got nothing
    assert record["status"] == "failed"
    assert "refused the server's request for the local file" in record["error"]


def test_a_script_cannot_load_a_local_file(project, maria_url, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("RUNNER_SECRET=hunter2\n")
    src = tmp_path / "src.db"
    db = sqlite3.connect(src)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"n{i}") for i in range(5)])
    db.commit()
    db.close()
    target = sa.create_engine(maria_url, poolclass=sa.NullPool)
    with target.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (id INT PRIMARY KEY, note TEXT)")
        conn.exec_driver_sql("CREATE TABLE loot (line TEXT)")
    project.connection("src", "sqlite", f"sqlite:///{src}")
    project.connection("dst", "mariadb", maria_url)
    script = f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE loot (line)"
    write = f'{{table: items, keys: [id], upsert_script: "{script}"}}'
    project.job("steal", "src", "dst", f"- {{name: t, read: {{table: items}}, write: {write}}}")
    services.apply(project.ws)
    record = services.run(project.ws, "steal")
    with target.connect() as conn:
        loot = conn.exec_driver_sql("SELECT count(*) FROM loot").scalar()
    target.dispose()
    assert loot == 0
    assert record["status"] == "failed"
    assert "refused the server's request for the local file" in record["error"]


def test_bulk_loads_still_use_load_data(project, maria_url, tmp_path):
    """The guarded path still serves runner's own loads (bytes from memory, tabs and NULs kept)."""
    src = tmp_path / "src.db"
    db = sqlite3.connect(src)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT, raw BLOB)")
    rows = [(i, f"tab\there\n{i}\\", bytes([0, 255, i % 256])) for i in range(30000)]
    db.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()
    project.connection("src", "sqlite", f"sqlite:///{src}")
    project.connection("dst", "mariadb", maria_url)
    project.job("sync", "src", "dst", "- {name: t, read: {table: items}, write: {table: items, keys: [id]}}")
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    target = sa.create_engine(maria_url, poolclass=sa.NullPool)
    with target.connect() as conn:
        got = [tuple(r) for r in conn.exec_driver_sql("SELECT id, note, raw FROM items ORDER BY id")]
    target.dispose()
    assert got == rows
