"""What a key column takes in a MariaDB index, which holds 3072 bytes for all its columns
together (a utf8mb4 character takes 4): a key that cannot fit is refused before any table
is made, and the unbounded columns share what the bounded ones leave."""

from __future__ import annotations

from runner.streams.types import ColumnType

INDEX_BYTES = 3072  # the most an index (a primary key) holds, all its columns together
MIN_SHARE = 64  # bytes of the index left to an unbounded key column at the least (16 characters)
KEY_BYTES = {  # what a value of a fixed-size type takes in an index
    "smallint": 2,
    "integer": 4,
    "bigint": 8,
    "real": 4,
    "double": 8,
    "boolean": 1,
    "date": 3,
    "time": 6,
    "timestamp": 8,
    "timestamptz": 8,
    "uuid": 16,
}
DIGIT_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)  # of a DECIMAL's digits left over from groups of 9


def key_bytes(ctype: ColumnType) -> int | None:
    """What a key column of this type takes in an index; None when unbounded."""
    if ctype.kind in ("varchar", "char") and ctype.length and ctype.length * 4 <= INDEX_BYTES:
        return ctype.length * 4
    if ctype.kind == "decimal":
        precision, scale = ctype.precision or 65, ctype.scale if ctype.precision else 30
        return sum(d // 9 * 4 + DIGIT_BYTES[d % 9] for d in (precision - (scale or 0), scale or 0))
    return KEY_BYTES.get(ctype.kind)
