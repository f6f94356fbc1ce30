"""Watch `jobs.d/` and `connections.d/` for changes, with watchdog.

Events only mark the folders as changed; the daemon reconciles once they have been quiet for
the debounce period, so an editor's save (often several events) or a `git pull` of many files
makes one reconcile, not one per event. The definition folders are watched recursively; the
root only for the folders appearing (it may hold a .venv of thousands of files).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from runner.definitions.load import DEFINITION_DIRS


class _Changed(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher):
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads (ours included) change nothing
        paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
        if event.is_directory and event.event_type in ("deleted", "moved"):
            self.watcher.forget(str(event.src_path))
        if any(self.watcher.concerns(p) for p in paths if p):
            self.watcher.touch()


class FolderWatcher:
    def __init__(self, root: Path, debounce: float, wake: threading.Event):
        self.root = root.resolve()
        self.debounce = debounce
        self.wake = wake  # set on every change, so the daemon's loop looks at once
        self._last_change: float | None = None
        self._lock = threading.Lock()
        self._observer = Observer()
        self._watched: dict[str, ObservedWatch] = {}

    def concerns(self, path: str) -> bool:
        try:
            relative = Path(path).resolve().relative_to(self.root)
        except ValueError:
            return False
        return bool(relative.parts) and relative.parts[0] in DEFINITION_DIRS

    def touch(self) -> None:
        with self._lock:
            self._last_change = time.monotonic()
        self._watch_new_folders()
        self.wake.set()

    def start(self) -> None:
        handler = _Changed(self)
        self._handler = handler
        self._observer.schedule(handler, str(self.root), recursive=False)
        self._watch_new_folders()
        self._observer.start()

    def _watch_new_folders(self) -> None:
        for name in DEFINITION_DIRS:
            folder = self.root / name
            if name not in self._watched and folder.is_dir():
                self._watched[name] = self._observer.schedule(self._handler, str(folder), recursive=True)

    def forget(self, path: str) -> None:
        """A definitions folder was removed or renamed: watch it again if it comes back."""
        name = Path(path).name
        if Path(path).parent == self.root and name in self._watched:
            self._observer.unschedule(self._watched.pop(name))

    def settled(self) -> bool:
        """True once after a change, when no event came for `debounce` seconds."""
        with self._lock:
            if self._last_change is None or time.monotonic() - self._last_change < self.debounce:
                return False
            self._last_change = None
            return True

    def seconds_to_settle(self) -> float | None:
        with self._lock:
            if self._last_change is None:
                return None
            return max(0.0, self._last_change + self.debounce - time.monotonic())

    def stop(self) -> None:
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=5)
