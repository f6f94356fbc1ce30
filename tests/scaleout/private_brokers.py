"""Brokers of a test's own, on free loopback ports, that the test may kill and start again
(the shared RabbitMQ and Redis are never restarted): `redis-server` without persistence (a
restart loses its queues, as a Redis broker without AOF would) and a RabbitMQ node of its own
(`rabbitmq-server` with its own node name, ports and folders: its durable queues and
persistent messages survive a kill)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class PrivateBroker:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True)
        self.log = folder / "broker.log"

    url: str
    start_seconds = 30.0
    user: str | None = None  # the user the broker runs as (None: the test's own)

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def start(self) -> None:
        args, env = self.command()
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                args,
                env=env,
                stdout=out,
                stderr=out,
                cwd=self.folder,
                start_new_session=True,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
            )
        deadline = time.monotonic() + self.start_seconds
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"the private broker did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to every process of the broker (its own session)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        deadline = time.monotonic() + 10
        while _listening(self.port):
            if time.monotonic() > deadline:  # a process of it left its session: no outage to test
                pytest.fail(f"the private broker still listens on {self.port} after SIGKILL")
            time.sleep(0.1)

    def close(self) -> None:
        self.kill()


class PrivateRedis(PrivateBroker):
    @property
    def url(self) -> str:  # type: ignore[override]
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> tuple[list[str], dict[str, str]]:
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server is not installed")
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        return [*args, "--save", "", "--appendonly", "no"], dict(os.environ)


class PrivateRabbitmq(PrivateBroker):
    start_seconds = 60.0

    def __init__(self, folder: Path):
        # the node runs as the rabbitmq user (rabbitmq-server run as root switches to it), which
        # cannot reach into pytest's folders (0700): a folder of its own in the temporary folder
        folder = Path(tempfile.mkdtemp(prefix="runner-rabbitmq-"))
        folder.chmod(0o755)
        folder.rmdir()
        super().__init__(folder)
        self.dist = free_port()
        self.name = f"runner-test-{self.port}@localhost"
        for sub in ("mnesia", "log"):
            (folder / sub).mkdir()
        (folder / "enabled_plugins").write_text("[].\n")
        self.home: str | None = None
        try:  # as root, the node runs as the rabbitmq user (as Debian's service does): its folders are its
            user = pwd.getpwnam("rabbitmq")
            for path in (folder, *folder.rglob("*")):
                os.chown(path, user.pw_uid, user.pw_gid)
            self.user, self.home = user.pw_name, user.pw_dir
        except (KeyError, PermissionError):
            pass

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def command(self) -> tuple[list[str], dict[str, str]]:
        # the script itself, not Debian's wrapper (/usr/sbin/rabbitmq-server), which run as root
        # starts the node through `su`, in a session of its own that SIGKILL to ours missed:
        # the node went on serving through the "outage" and outlived the test
        debian = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
        server = str(debian) if debian.exists() else shutil.which("rabbitmq-server")
        if server is None:
            pytest.skip("rabbitmq-server is not installed")
        env = dict(os.environ) | {
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "none"),
        }
        if self.home is not None:  # its Erlang cookie is in its home
            env["HOME"] = self.home
        return [server], env
