"""Where a job's change logs are: a folder on this machine or on an FTP or SFTP server, through
the `files` kind's `Folder` (`runner.connectors.files.location`), so change logs live wherever a
files connection can, with the same guarantee: a file is written under a hidden `.partial`
name and renamed once complete (on this machine: synced first), so no one sees half a file.

The index (`runner.state.changelogs`) names a file by what `name` gives: on this machine its
absolute path (what earlier versions stored), on a server the folder's address and the file's
path in it (`sftp://user@host:22/logs/default/reader/customers/<run>-0001.parquet`, never a
secret). A writer, `runner replay` and retention open that name through the folder of the
reader's `change_log`, signed in as its connection says."""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from runner.connectors.files.location import FilesConnection, Folder, LocalFolder, failure, open_folder
from runner.errors import RunnerError, TerminalError


class ChangeLogFolder:
    """A change-log folder: files are named relative to it with '/', and indexed by `name`."""

    def __init__(self, folder: Folder, local: bool):
        self.folder, self.local = folder, local
        self.prefix = (folder.root if local else folder.where).rstrip("/") + "/"

    @property
    def where(self) -> str:
        return self.folder.where

    def name(self, relative: str) -> str:
        """What the index keeps for the file at `relative`."""
        return self.prefix + relative

    def relative(self, name: str) -> str:
        """An indexed file's path in this folder. On this machine an absolute path outside it
        stays absolute (a file kept before `change_log.path` changed is still read).

        Raises:
            TerminalError: a file on another server or folder than this one's.
        """
        if name.startswith(self.prefix):
            return name[len(self.prefix) :]
        if self.local and name.startswith("/"):
            return name  # `Folder.full` keeps an absolute path as it is
        raise TerminalError(
            f"the change log {name} is not in {self.where}: the reader's change_log connection changed "
            "since it was written; put it back, or run the writer with --resync once the reader ran again"
        )

    def open_write(self, relative: str) -> IO[bytes]:
        return self.folder.open_write(relative)

    def publish(self, temporary: str, final: str) -> None:
        """Rename a complete file to its final name (on this machine: synced, then the folder)."""
        self.folder.publish(temporary, final)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[Any]:
        """An indexed file, readable at any offset (a server's FTP file: spooled to a temporary
        file first, so the control connection is free again before it is read).

        Raises:
            TerminalError: the file is gone (removed by hand), or not in this folder.
            TransientError: the server cannot be reached.
        """
        relative = self.relative(name)
        try:
            opened = self.folder.seekable(relative)
            f = opened.__enter__()
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot read the change log {name}", exc) from None
        try:
            yield f
        finally:
            opened.__exit__(None, None, None)

    def remove(self, name: str) -> None:
        """Remove an indexed file (gone already: nothing to do)."""
        self.folder.remove(self.relative(name))

    def files_in(self, relative: str) -> list[str]:
        """The files directly in a folder below this one (hidden ones too: a `.partial` left by
        a run that stopped), as paths relative to this folder; none when it does not exist."""
        full = self.folder.full(relative)
        fs = self.folder.fs
        fs.invalidate_cache(full)  # FTP's listings are cached: a rename since would be missed
        if not fs.isdir(full):
            return []
        found = []
        for info in fs.ls(full, detail=True):
            if info.get("type") == "file":
                found.append(posixpath.join(relative, posixpath.basename(info["name"].rstrip("/"))))
        return sorted(found)

    def probe(self) -> None:
        """The folder exists (or is made) and takes a file."""
        try:
            self.folder.probe()
        except Exception as exc:  # noqa: BLE001 - each location's library raises its own
            raise failure(f"cannot write change logs in {self.where}", exc) from None

    def close(self) -> None:
        self.folder.close()


def open_change_log_folder(
    name: str, folder: str | None, location: dict[str, Any] | None, base_dir: Path
) -> ChangeLogFolder:
    """A job's change-log folder: `folder` on this machine (absolute), or `location`, the spec
    of a files connection (named `name` in messages) on an FTP or SFTP server, signed in.

    Raises:
        TerminalError: refused (wrong password or key, unknown host key).
        TransientError: the server cannot be reached.
    """
    if location is None or location.get("protocol", "local") == "local":
        assert folder is not None
        return ChangeLogFolder(LocalFolder(Path(folder)), local=True)
    return ChangeLogFolder(open_folder(name, FilesConnection.model_validate(location), base_dir), local=False)
