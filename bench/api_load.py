"""Load on the HTTP API while jobs run (issue 7): N concurrent clients list jobs and a job's
history for S seconds against a real `runner daemon --http`; prints requests/s, latency
percentiles and errors.

The daemon runs in its own process on a temporary copy of the demo (two SQLite databases),
with the demo job fired every 2 seconds (and the job that follows it) so runs go on during
the load. The clients are `wrk` (Debian: `apt-get install wrk`), N connections alternating the
two requests; without wrk, asyncio tasks on one httpx pool in this process, which costs more
CPU per request than the server does and so measures mostly itself (the output says which).
Client and server share the machine's cores, as they would on a small server.

With `--attackers N`, N abusive clients (`api_attacks.py`: slow headers, huge headers and
bodies, wrong keys, 80,000-key bodies) run beside the load; the figures are then the valid
requests' while they do, and what the attackers got is listed.

    .venv/bin/python bench/api_load.py [--clients 50] [--seconds 30] [--attackers 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_attacks import Attackers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RUNNER = [sys.executable, "-m", "runner"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(folder: Path) -> str:
    """The demo's definitions with a 2-second schedule, its source, and a read key."""
    for name in ("jobs.d", "connections.d"):
        shutil.copytree(REPO / name, folder / name)
    job = folder / "jobs.d" / "shop-to-warehouse.yaml"
    text = job.read_text()
    job.write_text(text.replace('cron: "*/15 * * * *"', 'cron: "* * * * * */2"'))
    subprocess.run(
        [sys.executable, str(REPO / "demo/make_source.py"), str(folder / "demo/data/shop.db")], check=True
    )
    subprocess.run([*RUNNER, "--dir", str(folder), "apply"], check=True, capture_output=True)
    created = subprocess.run(
        [*RUNNER, "--dir", str(folder), "keys", "create", "load", "--scope", "read"],
        check=True,
        capture_output=True,
        text=True,
    )
    return created.stdout.strip()


PATHS = ["/api/v1/jobs", "/api/v1/jobs/shop-to-warehouse/runs?filter=all&limit=20"]


async def client(http: httpx.AsyncClient, deadline: float, latencies: list[float], errors: list[str]) -> None:
    i = 0
    while time.monotonic() < deadline:
        path = PATHS[i % 2]
        i += 1
        started = time.perf_counter()
        try:
            response = await http.get(path)
            if response.status_code != 200:
                errors.append(f"{path}: HTTP {response.status_code}")
        except httpx.HTTPError as exc:
            errors.append(f"{path}: {type(exc).__name__}: {exc}")
        latencies.append(time.perf_counter() - started)


async def load(port: int, key: str, clients: int, seconds: float) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits, timeout=30
    ) as http:
        await http.get("/api/v1/version")  # warm: imports, first state-store read
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(client(http, deadline, latencies, errors) for _ in range(clients)))
        elapsed = time.monotonic() - started
    return latencies, errors, elapsed


WRK_SCRIPT = """
local paths = {"%s", "%s"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% 2) + 1])
end
"""


def load_wrk(wrk: str, folder: Path, port: int, key: str, clients: int, seconds: float) -> dict:
    """wrk's own figures: requests/s, latency percentiles (--latency), non-2xx and socket errors."""
    script = folder / "paths.lua"
    script.write_text(WRK_SCRIPT % tuple(PATHS))
    threads = str(min(2, clients))
    command = [
        wrk,
        "-t",
        threads,
        "-c",
        str(clients),
        "-d",
        f"{int(seconds)}s",
        "--latency",
        "-s",
        str(script),
    ]
    command += ["-H", f"Authorization: Bearer {key}", f"http://127.0.0.1:{port}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        return round(float(match[1]) * {"us": 0.001, "ms": 1, "s": 1000}[match[2]], 1)

    requests = int(re.search(r"(\d+) requests in", out)[1])
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx[1]) if non_2xx else 0) + (sum(map(int, socket.groups())) if socket else 0)
    return {
        "client": "wrk",
        "requests": requests,
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "p50_ms": ms("50"),
        "p90_ms": ms("90"),
        "p99_ms": ms("99"),
        "errors": errors,
        "first_errors": [line for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line],
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--python-client", action="store_true", help="Use the Python client even with wrk.")
    parser.add_argument("--attackers", type=int, default=0, help="Abusive clients beside the load.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-api-load-") as tmp:
        folder = Path(tmp)
        key = prepare(folder)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
        log = (folder / "daemon.log").open("w")
        daemon = subprocess.Popen(
            [*RUNNER, "--dir", str(folder), "daemon", "--http", f"127.0.0.1:{port}"], stderr=log, env=env
        )
        try:
            deadline = time.monotonic() + 20
            while "serving the API" not in (folder / "daemon.log").read_text():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    print((folder / "daemon.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.05)
            runs_before = len(list((folder / ".runner/history").glob("*/*/*.json")))
            attackers = Attackers(port, args.attackers)
            attackers.start()
            wrk = shutil.which("wrk")
            if wrk and not args.python_client:
                result = load_wrk(wrk, folder, port, key, args.clients, args.seconds)
            else:
                latencies, errors, elapsed = asyncio.run(load(port, key, args.clients, args.seconds))
                result = {
                    "client": "python (httpx)",
                    "requests": len(latencies),
                    "requests_per_second": round(len(latencies) / elapsed, 1),
                    "p50_ms": round(percentile(latencies, 50) * 1000, 1),
                    "p90_ms": round(percentile(latencies, 90) * 1000, 1),
                    "p99_ms": round(percentile(latencies, 99) * 1000, 1),
                    "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
                    "errors": len(errors),
                    "first_errors": errors[:5],
                }
            runs_during = len(list((folder / ".runner/history").glob("*/*/*.json"))) - runs_before
            attacks = attackers.stop()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            log.close()
        result = {"clients": args.clients, "seconds": args.seconds} | result
        result |= {"job_runs_during_load": runs_during, "daemon_exit": daemon.returncode}
        result |= {"attackers": args.attackers, "attacks": attacks}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        r = result
        print(
            f"{r['clients']} clients ({r['client']}) for {r['seconds']} s: {r['requests']} requests, "
            f"{r['requests_per_second']} req/s; latency p50 {r['p50_ms']} ms, p90 {r['p90_ms']} ms, "
            f"p99 {r['p99_ms']} ms; {r['errors']} errors; {r['job_runs_during_load']} job runs meanwhile "
            "(target: no errors, p99 < 100 ms)"
        )
        for error in result["first_errors"]:
            print(f"  {error}")
        if args.attackers:
            print(f"beside {args.attackers} attackers, who got:")
            for what, count in result["attacks"].items():
                print(f"  {count:>7}  {what}")
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
