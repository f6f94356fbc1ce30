"""Where a `files` connection's folder is: on this machine, on an FTP server or on an SFTP
server. Each is an fsspec file system (fsspec is the layer, so another location is one more
`Folder` subclass here) under one small interface: list the files of a pattern with their
modified times, stream one in, write one under a temporary name and rename it when complete.

Only what the tests run against is offered: a local folder, FTP (pyftpdlib) and SFTP
(asyncssh). A password or a private key is a secret reference, resolved when the folder is
opened and remembered for redaction; no message here quotes it."""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import ftplib
import io
import os
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from runner.connectors import own_paths
from runner.definitions import secrets
from runner.definitions.load import DEFINITION_DIRS
from runner.definitions.models import ConnectionSpec
from runner.errors import TerminalError, TransientError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

CONNECT_TIMEOUT = 30.0  # seconds to reach a server and sign in
PORTS = {"ftp": 21, "sftp": 22}


class FilesConnection(ConnectionSpec):
    """A folder: on this machine (relative paths: to the definitions folder), or on an FTP or
    SFTP server (then `host`, and how to sign in). Created when a task first writes to it."""

    type: Literal["files"] = Field(description="A folder of files.")
    path: str = Field(
        min_length=1,
        description="The folder: on this machine, or on the server (relative to the login folder "
        "unless it starts with '/').",
    )
    protocol: Literal["local", "ftp", "sftp"] = Field(
        "local", description="Where the folder is: `local` (this machine), `ftp` or `sftp` (a server)."
    )
    host: str | None = Field(
        None, min_length=1, description="ftp and sftp: the server's host name or address."
    )
    port: int | None = Field(None, ge=1, le=65535, description="ftp and sftp: the server's port (21, 22).")
    username: str | None = Field(None, min_length=1, description="ftp and sftp: sign in as this user.")
    password: str | None = Field(
        None, description="A secret reference, never the password itself: ${env:NAME} or ${file:path}."
    )
    private_key: str | None = Field(
        None,
        description="sftp: a secret reference to a private key in OpenSSH or PEM form "
        "(`${file:keys/id_ed25519}`), never the key itself; unencrypted, or opened with `password`.",
    )
    host_key: str | None = Field(
        None,
        description="sftp: the server's public key as `ssh-keyscan` prints it (`ssh-ed25519 AAAA…`): the "
        "server must show this key before anything is sent to it.",
    )

    @field_validator("password", "private_key")
    @classmethod
    def _reference(cls, value: str | None, info: Any) -> str | None:
        if info.field_name == "private_key":
            return secrets.check_password(value, "SFTP_KEY", "id_ed25519")
        return secrets.check_password(value, "FILES_PASSWORD", "files-password")

    @model_validator(mode="after")
    def _consistent(self) -> FilesConnection:
        remote = self.protocol != "local"
        given = [
            f for f in ("host", "port", "username", "password", "private_key", "host_key") if getattr(self, f)
        ]
        if not remote and given:
            raise ValueError(f"{', '.join(given)}: for a folder on a server (protocol ftp or sftp) only")
        if remote and self.host is None:
            raise ValueError(f"protocol {self.protocol} needs the server's 'host'")
        if (self.password or self.private_key) and self.username is None:
            raise ValueError("a password or private_key goes with a 'username'")
        if self.protocol == "ftp":
            if self.private_key or self.host_key:
                raise ValueError("private_key and host_key are for sftp; FTP signs in with a password")
            if self.password and not secrets.loopback(self.host or ""):
                raise ValueError(
                    f"FTP would send the password to {self.host} in the clear: use protocol sftp; only a "
                    "server on this machine (localhost) may take it plain"
                )
        if self.protocol == "sftp" and self.host_key is None:
            raise ValueError(
                "sftp needs the server's 'host_key' (`ssh-keyscan -t ed25519 HOST` prints it): without it, "
                "anyone answering at the address would be sent the password"
            )
        if self.host_key is not None and len(self.host_key.split()) < 2:
            raise ValueError("host_key: the key type and its base64 text, as `ssh-keyscan` prints them")
        return self

    def where(self, base_dir: Path) -> str:
        """The folder as messages name it (never with a secret)."""
        if self.protocol == "local":
            return str((base_dir / self.path).resolve())
        user = f"{self.username}@" if self.username else ""
        return (
            f"{self.protocol}://{user}{self.host}:{self.port or PORTS[self.protocol]}/{self.path.lstrip('/')}"
        )


def stamp_of(info: dict[str, Any]) -> dt.datetime:
    """A listing entry's modified time as naive UTC, whichever way its file system gives it."""
    value = info.get("mtime", info.get("modify", info.get("LastModified")))
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC).replace(tzinfo=None)
    if isinstance(value, str):  # FTP's MLSD fact: YYYYMMDDHHMMSS[.sss], UTC
        whole, _, fraction = value.partition(".")
        stamp = dt.datetime.strptime(whole, "%Y%m%d%H%M%S")
        return stamp.replace(microsecond=int((fraction + "000000")[:6])) if fraction else stamp
    raise TerminalError(f"the server gives no modified time for {info.get('name')!r}")


def hidden(relative: str) -> bool:
    """A name or folder starting with '.': runner's temporary files, and what people hide."""
    return any(part.startswith(".") for part in relative.split("/"))


class Folder:
    """A folder on a file system: files are named relative to it, with '/'."""

    def __init__(self, fs: AbstractFileSystem, root: str, where: str):
        self.fs, self.root, self.where = fs, root.rstrip("/") or "/", where

    def full(self, relative: str) -> str:
        return posixpath.join(self.root, relative)

    def files(self, pattern: str) -> list[tuple[dt.datetime, str]]:
        """The files matching `pattern` (`**` crosses folders), hidden ones left out, with their
        modified time (naive UTC), oldest first, then by name."""
        return [(stamp, relative) for stamp, relative, _ in self.listing(pattern)]

    def listing(self, pattern: str) -> list[tuple[dt.datetime, str, int]]:
        """As `files`, with each file's size."""
        if not self.fs.isdir(self.root):
            raise TerminalError(f"the folder {self.where} does not exist")
        depth = None if "**" in pattern else pattern.count("/") + 1  # list no deeper than the pattern reaches
        found = []
        for path, info in self.fs.find(self.root, maxdepth=depth, detail=True).items():
            relative = posixpath.relpath(self.fs._strip_protocol(path), self.root)
            if info.get("type") == "file" and not hidden(relative) and _matches(relative, pattern):
                found.append((stamp_of(info), relative, int(info.get("size") or 0)))
        return sorted(found)

    def exists(self, relative: str) -> bool:
        return bool(self.fs.exists(self.full(relative)))

    def open_read(self, relative: str) -> IO[bytes]:
        """The file's bytes, streamed (never read whole)."""
        return _Raw(self.fs.open(self.full(relative), "rb", block_size=1 << 20))

    @contextlib.contextmanager
    def seekable(self, relative: str) -> Iterator[Any]:
        """The file where it can be read at any offset (a Parquet file's footer first)."""
        with self.open_read(relative) as f:
            yield f

    def open_write(self, relative: str) -> IO[bytes]:
        """A new file, to be `publish`ed (renamed) once complete."""
        self.fs.makedirs(posixpath.dirname(self.full(relative)) or "/", exist_ok=True)
        return _Raw(self.fs.open(self.full(relative), "wb"))

    def publish(self, temporary: str, final: str) -> None:
        """Make a complete file visible under its name in one rename (RNFR/RNTO on FTP)."""
        self.fs.mv(self.full(temporary), self.full(final))

    def remove(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm(self.full(relative))

    def append(self, relative: str, data: bytes) -> None:
        """Add `data` at the end of a file (made when missing): a dead letter's lines."""
        self.fs.makedirs(posixpath.dirname(self.full(relative)) or "/", exist_ok=True)
        with self.fs.open(self.full(relative), "ab") as f:
            f.write(data)

    def probe(self) -> None:
        """The folder exists (or is made) and takes a file."""
        self.fs.makedirs(self.root, exist_ok=True)
        name = f".runner-probe-{os.getpid()}"
        with self.open_write(name) as f:
            f.write(b"")
        self.remove(name)

    def close(self) -> None:
        """Sign off the server (a local folder has nothing to close)."""


class _Raw(io.RawIOBase):
    """A file system's file object (paramiko's is not one of `io`'s) as a raw `io` stream."""

    def __init__(self, f: Any):
        self.f = f

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        self.f.write(bytes(data))
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.f.seek(offset, whence)
        return int(self.f.tell())

    def tell(self) -> int:
        return int(self.f.tell())

    def close(self) -> None:
        if not self.closed:
            self.f.close()
        super().close()


RUNNER_OWN = (*DEFINITION_DIRS, ".runner")  # below the definitions folder: what no task writes


class LocalFolder(Folder):
    """A folder on this machine: a published file is synced, renamed, and its folder synced,
    so a file is whole after a crash or not there at all.

    A folder may lie above the definitions folder (`path: .`): no file is then written into
    `guarded` (its jobs.d/ and connections.d/, which the daemon applies as they change without
    a review, and runner's own .runner/), whatever a task's file template makes."""

    def __init__(self, root: Path, guarded: tuple[Path, ...] = ()):
        from fsspec.implementations.local import LocalFileSystem

        super().__init__(LocalFileSystem(), str(root), str(root))
        self.guarded = guarded

    def _writable(self, relative: str) -> Path:
        """The file's path, unless it lies in a guarded folder (symlinks followed).

        Raises:
            TerminalError: it does.
        """
        path = Path(self.full(relative))
        resolved = path.parent.resolve() / path.name
        for folder in (*self.guarded, *own_paths.guarded()):
            if resolved.is_relative_to(folder):
                raise TerminalError(
                    f"{relative!r} lies in {folder}: a task never writes the definitions (applied as "
                    "they change, without a review) nor runner's own files; name a file outside them"
                )
        return path

    def open_read(self, relative: str) -> IO[bytes]:
        return open(self.full(relative), "rb")  # noqa: SIM115 - the reader closes it

    def open_write(self, relative: str) -> IO[bytes]:
        path = self._writable(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb")  # noqa: SIM115 - the writer closes it

    def publish(self, temporary: str, final: str) -> None:
        source, target = Path(self.full(temporary)), self._writable(final)
        with open(source, "rb") as f:
            os.fsync(f.fileno())
        os.replace(source, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def append(self, relative: str, data: bytes) -> None:
        path = self._writable(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


class FtpFolder(Folder):
    """A folder on an FTP server. A file streams over one data connection (RETR, STOR), never a
    request per block; a rename is RNFR/RNTO. The server's control connection carries one
    transfer at a time, so a dead letter is appended over a second one."""

    def __init__(self, spec: FilesConnection, password: str | None, where: str):
        self.spec, self.password = spec, password
        fs = self._connect()
        root = spec.path if spec.path.startswith("/") else posixpath.join(fs.ftp.pwd(), spec.path)
        super().__init__(fs, posixpath.normpath(root), where)
        self.side: AbstractFileSystem | None = None

    def _connect(self) -> AbstractFileSystem:
        from fsspec.implementations.ftp import FTPFileSystem

        return FTPFileSystem(
            self.spec.host,
            port=self.spec.port or PORTS["ftp"],
            username=self.spec.username or "anonymous",
            password=self.password or "",
            timeout=CONNECT_TIMEOUT,
            skip_instance_cache=True,
        )

    def open_read(self, relative: str) -> IO[bytes]:
        return _Retrieve(self.fs.ftp, self.full(relative))

    @contextlib.contextmanager
    def seekable(self, relative: str) -> Iterator[Any]:
        with tempfile.TemporaryFile() as spool:  # bounded by disk, not memory
            with self.open_read(relative) as f:  # the transfer ends here: the connection is free again
                while chunk := f.read(1 << 20):
                    spool.write(chunk)
            spool.seek(0)
            yield spool

    def open_write(self, relative: str) -> IO[bytes]:
        self.fs.makedirs(posixpath.dirname(self.full(relative)) or "/", exist_ok=True)
        return _Store(self.fs.ftp, self.full(relative))

    def append(self, relative: str, data: bytes) -> None:
        if self.side is None:
            self.side = self._connect()
        self.side.makedirs(posixpath.dirname(self.full(relative)) or "/", exist_ok=True)
        self.side.ftp.storbinary(f"APPE {self.full(relative)}", io.BytesIO(data))

    def close(self) -> None:
        for fs in (self.fs, self.side):
            if fs is not None:
                with contextlib.suppress(Exception):
                    fs.ftp.quit()


def _matches(relative: str, pattern: str) -> bool:
    """Whether a path matches a glob pattern where `*` stays within a folder and `**/` crosses
    any number of them (none included), as the other locations' glob."""
    import re

    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out, i = out + re.escape("["), i + 1
            else:
                out, i = out + fnmatch.translate(pattern[i : end + 1])[4:-3], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.fullmatch(out, relative) is not None


class _Retrieve(io.RawIOBase):
    """A file streamed from an FTP server over one RETR data connection."""

    def __init__(self, ftp: Any, path: str):
        ftp.voidcmd("TYPE I")
        self.ftp, self.conn = ftp, ftp.transfercmd(f"RETR {path}")
        self.done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self.conn.recv_into(buffer)

    def close(self) -> None:
        """End the transfer: its one final reply is read (226 when the whole file came, else a
        426 for the data connection closed early, which is no error here). No ABOR: servers
        answer it with one reply or two, and a stray one would shift every later answer."""
        if not self.closed and not self.done:
            self.done = True
            self.conn.close()
            with contextlib.suppress(*ftplib.all_errors):
                self.ftp.voidresp()
        super().close()


class _Store(io.RawIOBase):
    """A file streamed to an FTP server over one STOR data connection."""

    def __init__(self, ftp: Any, path: str):
        ftp.voidcmd("TYPE I")
        self.ftp, self.conn = ftp, ftp.transfercmd(f"STOR {path}")

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.conn.sendall(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.conn.close()
            self.ftp.voidresp()  # the server has the whole file
        super().close()


class SftpFolder(Folder):
    """A folder on an SFTP server; the server must show the stated host key before the
    password or key is sent. A rename is SFTP's posix-rename (atomic on the server)."""

    def __init__(self, spec: FilesConnection, password: str | None, key: Any, where: str):
        import paramiko
        from fsspec.implementations.sftp import SFTPFileSystem

        stated = (spec.host_key or "").split()[:2]

        class KnownKey(paramiko.MissingHostKeyPolicy):
            """Accept only the stated host key (no known_hosts file is read)."""

            def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
                if [key.get_name(), key.get_base64()] != stated:
                    raise TerminalError(
                        f"the SFTP server at {hostname} shows a host key ({key.get_name()}) other than "
                        "host_key: nothing was sent to it"
                    )

        class Sftp(SFTPFileSystem):  # type: ignore[misc]
            def _connect(self) -> None:  # fsspec's, with the host key checked
                self.client = paramiko.SSHClient()
                self.client.set_missing_host_key_policy(KnownKey())
                self.client.connect(self.host, **self.ssh_kwargs)
                self.ftp = self.client.open_sftp()

        fs = Sftp(
            spec.host,
            port=spec.port or PORTS["sftp"],
            username=spec.username,
            password=password,
            pkey=key,
            timeout=CONNECT_TIMEOUT,
            banner_timeout=CONNECT_TIMEOUT,
            auth_timeout=CONNECT_TIMEOUT,
            look_for_keys=False,
            allow_agent=False,
            skip_instance_cache=True,
        )
        super().__init__(fs, spec.path if spec.path.startswith("/") else fs.ftp.normalize(spec.path), where)

    def open_write(self, relative: str) -> IO[bytes]:
        f = super().open_write(relative)
        f.f.set_pipelined(True)  # type: ignore[attr-defined]  # paramiko's: writes do not wait for each answer
        return f

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.fs.client.close()


def _private_key(text: str, passphrase: str | None) -> Any:
    """The key of a private key's text, whichever of the kinds paramiko reads it is."""
    import paramiko

    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text), password=passphrase)
        except (paramiko.SSHException, ValueError):
            continue
    raise TerminalError(
        "private_key: not an OpenSSH or PEM private key runner can read (ed25519, ECDSA, RSA)"
    )


def open_folder(name: str, spec: FilesConnection, base_dir: Path) -> Folder:
    """The connection's folder, signed in.

    Raises:
        TerminalError: refused (wrong password or key, unknown host key, no such folder).
        TransientError: the server cannot be reached.
    """
    where = spec.where(base_dir)
    if spec.protocol == "local":
        root = (base_dir / spec.path).resolve()
        held = [r for r in secrets.secret_roots(base_dir) if r.is_relative_to(root)]
        if held:
            raise TerminalError(
                f"connection {name!r}: its folder {root} holds {held[0]}, where secrets are read from "
                f"(${{file:}}): a task could read them into a table; point 'path' at a folder of data"
            )
        return LocalFolder(root, tuple((base_dir / d).resolve() for d in RUNNER_OWN))
    password = secrets.resolve(spec.password, base_dir) if spec.password else None
    try:
        if spec.protocol == "ftp":
            return FtpFolder(spec, password, where)
        key = (
            _private_key(secrets.resolve(spec.private_key, base_dir), password) if spec.private_key else None
        )
        return SftpFolder(spec, None if key else password, key, where)
    except TerminalError as exc:
        raise TerminalError(f"connection {name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - each protocol's library raises its own
        raise failure(f"connection {name!r}: cannot sign in to {where}", exc) from None


def failure(doing: str, exc: BaseException) -> TerminalError | TransientError:
    """A file system's error as runner's: refusals are terminal, a lost server transient; the
    message is redacted (a server might echo what it was sent)."""

    text = secrets.redact(str(exc) or type(exc).__name__)
    terminal = isinstance(exc, ftplib.error_perm | PermissionError | FileNotFoundError | FileExistsError)
    try:
        import paramiko

        terminal = terminal or isinstance(
            exc, paramiko.AuthenticationException | paramiko.BadHostKeyException
        )
    except ImportError:  # pragma: no cover - paramiko is a dependency
        pass
    if terminal:
        return TerminalError(f"{doing}: {text}")
    return TransientError(f"{doing}: {text}")
