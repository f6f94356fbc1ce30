"""Integer keys summed up per bucket: the digests that find deleted keys without
reading every key (watermark deletes)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# A bucket of integer keys summed up: (count, sum of the keys, sum of their `key_hash`). Two
# different sets of keys of equal count and sum (keys 1 and 4 deleted, 2 and 3 committed late
# behind a watermark) differ in the third unless their md5s collide in sum: about 2**-60 for
# a pair of sets, whatever the keys' pattern, as md5 has no arithmetic structure to exploit.
BucketDigest = tuple[int, int, int]
KEY_HASH_BITS = 60  # 15 hex digits: a sum of 60-bit values stays exact where sums are numeric


def key_hash(value: int) -> int:
    """The first 60 bits of the md5 of an integer key's decimal text: what every dialect's
    `SqlConnector.key_hash_sums` adds up per bucket, computed alike in SQLite, PostgreSQL and
    MariaDB (the decimal text of an integer is the same in all three)."""
    digest = hashlib.md5(str(int(value)).encode(), usedforsecurity=False).hexdigest()
    return int(digest[: KEY_HASH_BITS // 4], 16)
