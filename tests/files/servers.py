"""Real FTP (pyftpdlib) and SFTP (asyncssh) servers on 127.0.0.1, each on a free port in a thread
of the test's process, serving a folder of tmp_path: what a `files` connection with protocol
ftp or sftp signs in to. A test reads and writes the served folder directly to check bytes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

USER, PASSWORD = "loader", "s3cret-Pa55word"


@dataclass
class Server:
    protocol: str
    port: int
    root: Path  # the folder the server serves: what `path: data` is below
    host_key: str | None = None
    private_key: str | None = None  # an authorised client key (OpenSSH text)
    extra: dict[str, Any] = field(default_factory=dict)

    def connection(self, path: str = "data", **more: Any) -> dict[str, Any]:
        """A files connection spec signing in with the password from ${env:FILES_PW}."""
        spec: dict[str, Any] = {
            "type": "files",
            "protocol": self.protocol,
            "host": "127.0.0.1",
            "port": self.port,
            "path": path,
            "username": USER,
            "password": "${env:FILES_PW}",
        }
        if self.host_key:
            spec["host_key"] = self.host_key
        return spec | more


@pytest.fixture
def ftp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    root = tmp_path / "ftp"
    (root / "data").mkdir(parents=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "banner": "test"})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    monkeypatch.setenv("FILES_PW", PASSWORD)
    yield Server("ftp", server.address[1], root)
    server.close_all()
    thread.join(5)


@pytest.fixture
def sftp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    import asyncssh

    root = tmp_path / "sftp"
    (root / "data").mkdir(parents=True)
    host = asyncssh.generate_private_key("ssh-ed25519")
    client = asyncssh.generate_private_key("ssh-ed25519")
    authorized = asyncssh.import_authorized_keys(client.export_public_key("openssh").decode())

    class Auth(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return username == USER and password == PASSWORD

        def public_key_auth_supported(self) -> bool:
            return True

        def validate_public_key(self, username: str, key: Any) -> bool:
            return username == USER and key.export_public_key() == client.export_public_key()

    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            started["server"] = await asyncssh.listen(
                "127.0.0.1",
                0,
                server_host_keys=[host],
                server_factory=Auth,
                sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
                allow_scp=False,
            )
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30), "the SFTP server did not start"
    port = started["server"].sockets[0].getsockname()[1]
    monkeypatch.setenv("FILES_PW", PASSWORD)
    public = " ".join(host.export_public_key("openssh").decode().split()[:2])
    yield Server(
        "sftp",
        port,
        root,
        host_key=public,
        private_key=client.export_private_key("openssh").decode(),
        extra={"authorized": authorized},
    )

    async def stop() -> None:
        started["server"].close()
        await started["server"].wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
