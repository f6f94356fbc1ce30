"""Abusive clients for `api_load.py --attackers N`: what an attacker without a key can send
while real clients use the API (the security issue's list). Each attacker is a thread on raw
sockets (no HTTP library in the way), bounded in time by the caller's stop event, and only
ever talks to 127.0.0.1.

- slowloris: 20 connections that send a request line, then a header line every 2 s;
- huge headers: requests with 8 MB of header lines, streamed, again and again;
- bad keys: a tight loop of requests with a wrong bearer key;
- huge bodies: POSTs that announce 100 MB and send 8 MB of JSON;
- many keys: an ad-hoc run body of 80,000 keys with a wrong key.

Every attacker counts what it sent and how the server answered (or cut it off).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

HOST = "127.0.0.1"
MB = 1 << 20


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answer(sock: socket.socket) -> str:
    """The status line of the server's answer, or how the connection ended."""
    try:
        data = sock.recv(256)
    except TimeoutError:
        return "no answer in 5 s"
    except OSError as exc:
        return type(exc).__name__
    if not data:
        return "closed"
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def slowloris(port: int, stop: threading.Event, seen: Counter) -> None:
    socks: list[socket.socket] = []
    for _ in range(20):
        try:
            sock = _connect(port)
            sock.sendall(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        except OSError as exc:
            seen[f"slowloris connect: {type(exc).__name__}"] += 1
    while not stop.wait(2):
        for sock in list(socks):
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                seen["slowloris header line sent"] += 1
            except OSError:
                seen["slowloris dropped by the server"] += 1
                socks.remove(sock)
                sock.close()
                if not stop.is_set():
                    try:
                        replacement = _connect(port)
                        replacement.sendall(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n")
                        socks.append(replacement)
                    except OSError:
                        pass
    for sock in socks:
        sock.close()


def huge_headers(port: int, stop: threading.Event, seen: Counter) -> None:
    line = b"X-Filler: " + b"a" * 8000 + b"\r\n"
    while not stop.is_set():
        try:
            with _connect(port) as sock:
                sock.sendall(b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n")
                sent = 0
                while sent < 8 * MB and not stop.is_set():
                    sock.sendall(line)
                    sent += len(line)
                sock.sendall(b"\r\n")
                seen[f"huge headers: {_answer(sock)}"] += 1
        except OSError as exc:
            seen[f"huge headers cut off: {type(exc).__name__}"] += 1
        stop.wait(0.2)


def bad_keys(port: int, stop: threading.Event, seen: Counter) -> None:
    request = (
        b"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer not-a-key\r\nConnection: close\r\n\r\n"
    )
    while not stop.is_set():
        try:
            with _connect(port) as sock:
                sock.sendall(request)
                seen[f"bad key: {_answer(sock)}"] += 1
        except OSError as exc:
            seen[f"bad key: {type(exc).__name__}"] += 1


def huge_bodies(port: int, stop: threading.Event, seen: Counter) -> None:
    head = (
        b"POST /api/v1/jobs/shop-to-warehouse/runs HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (100 * MB)
    )
    chunk = b"[" + b"1," * (MB // 2)
    while not stop.is_set():
        try:
            with _connect(port) as sock:
                sock.sendall(head)
                for _ in range(8):
                    sock.sendall(chunk)
                seen[f"huge body: {_answer(sock)}"] += 1
        except OSError as exc:
            seen[f"huge body cut off: {type(exc).__name__}"] += 1
        stop.wait(0.2)


def many_keys(port: int, stop: threading.Event, seen: Counter) -> None:
    body = b"{" + b",".join(b'"k%d": 1' % i for i in range(80_000)) + b"}"
    head = (
        b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-a-key\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    while not stop.is_set():
        try:
            with _connect(port) as sock:
                sock.sendall(head + body)
                seen[f"80,000 keys: {_answer(sock)}"] += 1
        except OSError as exc:
            seen[f"80,000 keys: {type(exc).__name__}"] += 1
        stop.wait(0.2)


ATTACKS: list[Callable[[int, threading.Event, Counter], None]] = [
    slowloris,
    huge_headers,
    bad_keys,
    huge_bodies,
    many_keys,
]


class Attackers:
    """N attacker threads, the kinds taken in turn, until `stop()`."""

    def __init__(self, port: int, count: int):
        self.stop_event = threading.Event()
        self.seen: Counter = Counter()
        self.threads = [
            threading.Thread(
                target=ATTACKS[i % len(ATTACKS)], args=(port, self.stop_event, self.seen), daemon=True
            )
            for i in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        time.sleep(1)  # the slow connections are open before the measured load begins

    def stop(self) -> dict[str, int]:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=15)
        return dict(sorted(self.seen.items()))
