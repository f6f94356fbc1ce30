"""The bundled reader and writer (`make demo`): shop-changes keeps the shop's changes as change
logs, shop-changes-to-warehouse applies them to the warehouse's cl_* tables, equal to the shop."""

from __future__ import annotations

import sqlite3

from typer.testing import CliRunner

from runner.cli.app import app


def test_the_demo_reader_and_writer(demo_project, monkeypatch):
    monkeypatch.chdir(demo_project.root)
    cli, base = CliRunner(), ["--dir", str(demo_project.root)]
    assert cli.invoke(app, [*base, "apply"]).exit_code == 0
    for job in ("shop-changes", "shop-changes-to-warehouse"):
        result = cli.invoke(app, [*base, "run", job])
        assert result.exit_code == 0, result.stdout
    shop = sqlite3.connect(demo_project.root / "demo/data/shop.db")
    warehouse = sqlite3.connect(demo_project.root / "demo/data/warehouse.db")
    shop.execute("UPDATE customers SET city = 'Oslo' WHERE id <= 10")
    shop.execute("DELETE FROM orders WHERE id % 100 = 0")
    shop.commit()
    for job in ("shop-changes", "shop-changes-to-warehouse"):
        result = cli.invoke(app, [*base, "run", job])
        assert result.exit_code == 0, result.stdout
    for table in ("customers", "orders"):
        query = "SELECT * FROM {} ORDER BY id"
        assert (
            shop.execute(query.format(table)).fetchall()
            == warehouse.execute(query.format(f"cl_{table}")).fetchall()
        )
    listed = cli.invoke(app, [*base, "changes", "shop-changes"])
    assert listed.exit_code == 0 and "default/shop-changes: 4 change log file(s)" in listed.stdout
    assert (demo_project.root / "demo/data/changelogs/default/shop-changes/orders").is_dir()
