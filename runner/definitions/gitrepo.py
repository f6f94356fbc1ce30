"""The git repository that holds a definitions folder, driven through `git` plumbing.

A change made through the API is committed without touching what the user works on: the
commit is built on a temporary index (`read-tree`, `update-index`, `write-tree`,
`commit-tree`) and the branch moves with `update-ref NEW OLD`, which refuses when someone
committed meanwhile. The work tree is written only for a change to the checked-out branch,
and then only the one file. Plumbing runs no hooks and needs no GitPython: `git` is there
wherever the definitions are kept in git.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner.errors import RunnerError, WriteBackRefused

ZERO = "0" * 40  # `update-ref NEW ZERO`: the ref must not exist yet
TIMEOUT = 60.0


@dataclass(frozen=True)
class Author:
    """Who a commit names as its author and committer."""

    name: str
    email: str


class Repo:
    """The work tree holding `folder`, and where `folder` lies in it (`prefix`)."""

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        try:
            top = self._git("rev-parse", "--show-toplevel", cwd=self.folder).strip()
        except RunnerError as exc:
            raise WriteBackRefused(
                f"{folder} is not in a git work tree: changes are written back to git, so the "
                f"definitions must be kept in one (`git init`) ({exc})"
            ) from None
        self.top = Path(top).resolve()
        rel = self.folder.relative_to(self.top).as_posix()
        self.prefix = "" if rel == "." else rel + "/"

    def _git(
        self,
        *args: str,
        cwd: Path | None = None,
        data: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        out = self.raw(*args, cwd=cwd, data=data, env=env)
        return out.decode("utf-8", "replace")

    def raw(
        self,
        *args: str,
        cwd: Path | None = None,
        data: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> bytes:
        environ = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=cwd or self.top,
                input=data,
                capture_output=True,
                env=environ,
                timeout=TIMEOUT,
            )
        except FileNotFoundError:
            raise RunnerError("git is not installed: changes are written back to git") from None
        except subprocess.TimeoutExpired:
            raise RunnerError(f"git {args[0]} took over {TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RunnerError(f"git {args[0]} failed: {message[-1] if message else done.returncode}")
        return done.stdout

    def path(self, relpath: str) -> str:
        """A path below the definitions folder as git names it (from the top of the work tree)."""
        return self.prefix + relpath

    def head(self) -> str | None:
        """The commit checked out, or None in a repository without commits."""
        try:
            return self._git("rev-parse", "--verify", "--quiet", "HEAD^{commit}").strip() or None
        except RunnerError:
            return None

    def tip(self, branch: str) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}").strip()
        except RunnerError:
            return None

    def check_branch(self, branch: str) -> None:
        """A branch a change may be committed to for review: a valid name, not checked out
        (moving a checked-out branch would leave its work tree behind its commit).

        Raises:
            WriteBackRefused: the name is not valid, or the branch is checked out.
        """
        if branch.startswith("-") or any(ord(c) < 32 for c in branch):  # an option, a NUL git never sees
            raise WriteBackRefused(f"{branch!r} is not a valid git branch name")
        try:
            self._git("check-ref-format", "--branch", branch)
        except RunnerError:
            raise WriteBackRefused(f"{branch!r} is not a valid git branch name") from None
        listing = self._git("worktree", "list", "--porcelain")
        checked_out = {line.removeprefix("branch refs/heads/") for line in listing.splitlines()}
        if branch in checked_out:
            raise WriteBackRefused(
                f"branch {branch!r} is checked out in a work tree: a change for review goes to a "
                "branch of its own (the work tree's branch gets changes applied at once, without ?branch)"
            )

    def blob(self, commit: str | None, path: str) -> str | None:
        """The blob id of `path` in `commit`, or None when it has no such file."""
        if commit is None:
            return None
        try:
            out = self._git("ls-tree", "-z", "--full-tree", commit, "--", path)
        except RunnerError:
            return None
        if not out:
            return None
        meta, _, _ = out.partition("\t")
        mode, kind, sha = meta.split()
        return sha if kind == "blob" else None

    def read(self, sha: str) -> bytes:
        return self.raw("cat-file", "blob", sha)

    def hash(self, data: bytes, write: bool = False) -> str:
        args = ["hash-object", "--stdin", *(["-w"] if write else [])]
        return self._git(*args, data=data).strip()

    def dirty(self, path: str) -> bool:
        """Whether `path` differs from HEAD in the index or the work tree (or is untracked)."""
        status = self._git("status", "--porcelain", "--untracked-files=all", "--", f":(top,literal){path}")
        return bool(status.strip())

    def export(self, commit: str, dirs: tuple[str, ...], dest: Path) -> None:
        """Write the files below `dirs` (relative to the definitions folder) in `commit` into
        `dest`: the folder a branch would have, to validate a change for review."""
        paths = [self.path(d) for d in dirs]
        listing = self.raw("ls-tree", "-r", "-z", "--full-tree", commit, "--", *paths)
        for entry in listing.split(b"\0"):
            if not entry:
                continue
            meta, _, name = entry.partition(b"\t")
            mode, kind, sha = meta.decode().split()
            if kind != "blob" or mode == "120000":  # symlinks are never definitions
                continue
            rel = name.decode("utf-8", "surrogateescape").removeprefix(self.prefix)
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read(sha))

    def commit(
        self, parent: str | None, path: str, blob: str | None, message: str, author: Author | None
    ) -> str:
        """A commit of `parent`'s tree with `path` set to `blob` (removed when None), built on
        a temporary index: the user's index and work tree are not touched. Not on any branch
        until `move` puts it there."""
        env: dict[str, str] = {}
        if author is not None:
            env = {
                "GIT_AUTHOR_NAME": author.name,
                "GIT_AUTHOR_EMAIL": author.email,
                "GIT_COMMITTER_NAME": author.name,
                "GIT_COMMITTER_EMAIL": author.email,
            }
        elif not self._has_identity():
            env = {"GIT_AUTHOR_NAME": "runner", "GIT_AUTHOR_EMAIL": "runner@localhost"}
            env |= {"GIT_COMMITTER_NAME": "runner", "GIT_COMMITTER_EMAIL": "runner@localhost"}
        with tempfile.TemporaryDirectory(prefix="runner-index-") as tmp:
            env["GIT_INDEX_FILE"] = str(Path(tmp) / "index")
            if parent is not None:
                self._git("read-tree", parent, env=env)
            if blob is None:
                self._git("update-index", "--force-remove", "--", path, env=env)
            else:
                self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = self._git("write-tree", env=env).strip()
        parents = ["-p", parent] if parent else []
        return self._git("commit-tree", tree, *parents, data=message.encode(), env=env).strip()

    def _has_identity(self) -> bool:
        try:
            self._git("var", "GIT_COMMITTER_IDENT")
            return True
        except RunnerError:
            return False

    def move(self, ref: str, new: str, old: str | None, message: str) -> None:
        """Point `ref` at `new` only if it still points at `old` (None: must not exist).

        Raises:
            WriteBackRefused: it moved meanwhile (a commit made beside this change).
        """
        try:
            self._git("update-ref", "-m", message, ref, new, old or ZERO)
        except RunnerError:
            raise WriteBackRefused(
                f"{ref} moved while the change was being made (a commit made meanwhile); "
                "nothing was changed: send the change again"
            ) from None

    def sync_index(self, path: str, blob: str | None) -> None:
        """Set the user's index entry of `path` to what was committed, so `git status` shows
        the file as committed rather than as a change staged the other way."""
        if blob is None:
            self._git("update-index", "--force-remove", "--", path)
        else:
            self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
            # stat data for the entry just set; other files needing an update are the user's business
            with contextlib.suppress(RunnerError):
                self._git("update-index", "-q", "--refresh")
