"""Start-up: what a CLI command pays in imports before its first row, from `python -X importtime`.

    .venv/bin/python bench/startup.py                       # run shop-to-warehouse, validate, --help
    .venv/bin/python bench/startup.py --repeat 5 -- run customer-stats

Needs the bundled SQLite demo applied (`make demo`). Each command runs `--repeat` times in two
modes: `no .pyc` (PYTHONDONTWRITEBYTECODE=1 and runner's own __pycache__ folders removed first,
as on a machine that never writes byte code: every runner module is compiled on every start;
the installed libraries keep the .pyc pip wrote) and `.pyc` (after a warm-up run that writes
them). It prints the median total import time (the sum of every module's own time), the median
CPU time of the whole command, and for the median run the packages that cost the most.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")
COMMANDS = [["run", "shop-to-warehouse"], ["validate"], ["--help"]]


def measure(args: list[str], folder: Path, pyc: bool) -> tuple[int, float, Counter[str]]:
    """One start: (total import µs, the command's CPU s, own µs per top-level package). CPU
    time (user + system) rather than wall time: the machine is shared, waits are not ours."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not pyc:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for cache in (ROOT / "runner").rglob("__pycache__"):
            shutil.rmtree(cache)
    command = [sys.executable, "-X", "importtime", "-m", "runner", "--dir", str(folder), *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=folder)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode not in (0, 2):
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    packages: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        if m := LINE.match(line):
            packages[m.group(4).split(".")[0]] += int(m.group(1))
    return sum(packages.values()), cpu, packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ROOT, help="folder holding jobs.d/ (the demo: the repo)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=8, help="packages listed per command and mode")
    parser.add_argument("command", nargs="*", help="one runner command (default: the three above)")
    opts = parser.parse_args()
    commands = [opts.command] if opts.command else COMMANDS
    for pyc in (False, True):
        if pyc:  # the warm-up run writes the .pyc files
            measure(commands[0], opts.dir, pyc=True)
        for args in commands:
            runs = sorted((measure(args, opts.dir, pyc) for _ in range(opts.repeat)), key=lambda r: r[0])
            total, _, packages = runs[len(runs) // 2]
            cpu = statistics.median(r[1] for r in runs)
            mode = ".pyc" if pyc else "no .pyc"
            name = "runner " + " ".join(args)
            print(f"{name:<31} {mode:<8} imports {total / 1000:6.1f} ms  cpu {cpu * 1000:6.1f} ms")
            top = ", ".join(f"{name} {us / 1000:.1f}" for name, us in packages.most_common(opts.top))
            print(f"    {top}")


if __name__ == "__main__":
    main()
