"""Reading ahead in a thread: one system produces while another consumes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


class ReadAhead:
    """Iterate `items` in a thread of its own, up to `depth` items ahead, from the moment it is
    made: one database produces while the other consumes (or while this connection does
    something else first). An error in the thread is raised where the items are consumed;
    `close` (or leaving the iteration early) stops the thread, which closes `items` where it
    ran, freeing its connection. Memory: `depth` + 2 items."""

    _END = object()

    def __init__(self, items: Iterator[Any], depth: int = 1):
        self.items = items
        self.pipe: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, name="runner-read-ahead", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.pipe.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for item in self.items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - raised in the consuming thread
            self._put(exc)
        finally:
            close = getattr(self.items, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                item = self.pipe.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
