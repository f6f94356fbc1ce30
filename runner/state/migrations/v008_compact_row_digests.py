"""Version 8: row digests stored compactly, about half the size (a hash task keeps one per
source row: 2M rows took 328 MB): each md5 as 16 bytes rather than 32 hex characters, and in
SQLite in the primary key's B-tree alone (WITHOUT ROWID) rather than a table and an index that
both hold the key hashes. The digests are converted, not dropped: dropping them would make the
next run of every hash task compare every row again."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    postgresql = conn.dialect.name == "postgresql"
    if postgresql:  # the new table's primary key index takes the old one's name
        conn.exec_driver_sql("ALTER INDEX row_digests_pkey RENAME TO row_digests_v6_pkey")
        unhex = "decode({}, 'hex')"
    else:
        conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
            "runner_unhex", 1, bytes.fromhex, deterministic=True
        )
        unhex = "runner_unhex({})"
    conn.exec_driver_sql("ALTER TABLE row_digests RENAME TO row_digests_v6")
    v8 = sa.MetaData()
    sa.Table(
        "row_digests",
        v8,
        sa.Column("task_id", sa.Integer, primary_key=True),
        sa.Column("key_hash", sa.LargeBinary(16), primary_key=True),
        sa.Column("row_hash", sa.LargeBinary(16), nullable=False),
        sa.Column("key_value", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )
    v8.create_all(conn)
    conn.exec_driver_sql(
        "INSERT INTO row_digests (task_id, key_hash, row_hash, key_value) SELECT task_id, "
        f"{unhex.format('key_hash')}, {unhex.format('row_hash')}, key_value FROM row_digests_v6"
    )
    conn.exec_driver_sql("DROP TABLE row_digests_v6")
