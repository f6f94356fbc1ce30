#!/usr/bin/env python3
"""Create the demo's source database: a SQLite `shop.db` with `customers` and `orders`.

Deterministic (fixed seed), with the values a copy must keep exactly: NULLs, unicode,
decimals with two places, timestamps with microseconds, booleans.

    python demo/make_source.py demo/data/shop.db [ROWS]
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import sys
from pathlib import Path

CITIES = ["Berlin", "Zürich", "São Paulo", "東京", "Kraków", "Reykjavík", "Montréal", None]
STATUSES = ["new", "paid", "shipped", "returned"]


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "demo/data/shop.db")
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rng = random.Random(7)
    base = dt.datetime(2026, 1, 1)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(80) NOT NULL, "
            "city VARCHAR(40), vip BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL)"
        )
        db.execute(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INTEGER NOT NULL, "
            "status VARCHAR(16) NOT NULL, amount NUMERIC(12,2) NOT NULL, note TEXT, "
            "ordered_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL)"
        )
        customers = [
            (
                i,
                f"Customer {i} – {rng.choice(['Ana', 'Jörg', 'Åsa', 'Łukasz', 'Zoë'])}",
                rng.choice(CITIES),
                rng.random() < 0.1,
                (base + dt.timedelta(seconds=rng.randrange(10**7))).isoformat(" ", "microseconds"),
            )
            for i in range(1, rows // 10 + 1)
        ]
        db.executemany("INSERT INTO customers VALUES (?,?,?,?,?)", customers)
        orders = []
        for i in range(1, rows + 1):
            ordered = base + dt.timedelta(seconds=rng.randrange(3 * 10**7), microseconds=rng.randrange(10**6))
            updated = ordered + dt.timedelta(seconds=rng.randrange(86_400))
            orders.append(
                (
                    i,
                    rng.randrange(1, rows // 10 + 1),
                    rng.choice(STATUSES),
                    f"{rng.randrange(100, 10**7) / 100:.2f}",
                    None if rng.random() < 0.2 else rng.choice(["gift 🎁", "express", "naïve café"]),
                    ordered.isoformat(" ", "microseconds"),
                    updated.isoformat(" ", "microseconds"),
                )
            )
        db.executemany("INSERT INTO orders VALUES (?,?,?,?,?,?,?)", orders)
    print(f"created {path} with {len(customers):,} customers and {rows:,} orders")


if __name__ == "__main__":
    main()
