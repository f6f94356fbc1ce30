"""Deleted keys behind a watermark, found without reading every key where both kinds sum up
keys (`key_buckets`): source and target keys are compared per bucket of an integer key (count,
sum and a key hash sum), and only the buckets that differ are compared key by key (in Python
when few, staged in the target when many). What each delete mode needs of the kinds is in
`runner.changes.needs`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from runner.changes.task import TaskRun
from runner.connectors.base import KEY_STAGE, KeyBuckets, KeyBucketWriter, MergeCounts, Writer
from runner.definitions.tasks import ReadSpec
from runner.streams.keys import BucketDigest, key_hash

KEYS_PER_BUCKET = 64
MAX_BUCKETS = 50_000
FEW_BUCKETS = 500  # at most ~32,000 keys a side: compared in Python rather than staged
BUCKETS_PER_PASS = 5_000  # at most 5,000 bound parameters and ~320,000 staged keys a pass


@dataclass
class KeySums:
    """The source's integer keys summed up per bucket of `width` keys (`BucketDigest`)."""

    width: int
    buckets: dict[int, BucketDigest] | None  # None: the source is empty


def _source(run: TaskRun) -> KeyBuckets:
    """The source's key bucket methods (`watermark._by_buckets` checked `key_buckets`)."""
    return cast(KeyBuckets, run.source)


def bucket_width(run: TaskRun) -> int | None:
    """The keys a bucket spans: KEYS_PER_BUCKET of the key range's values (as many keys where
    they are dense; where they are not, fewer in more buckets, never more than there are
    keys); None when the source is empty."""
    low, high = _source(run).key_range(run.task.read, run.task.write.keys[0])
    if low is None or high is None:
        return None
    span = high - low + 1
    return max(1, -(-span // min(MAX_BUCKETS, max(1, span // KEYS_PER_BUCKET))))


def source_key_sums(run: TaskRun, width: int | None) -> KeySums:
    if width is None:
        return KeySums(1, None)
    task, key = run.task, run.task.write.keys[0]
    return KeySums(width, _source(run).key_buckets(task.read, key, width, _native_hash(run)))


class TargetSums:
    """The target's key buckets summed up beside the round's merges rather than after them:
    read in a snapshot fixed before the writer's first commit, to which the keys each merge
    inserts are added (`merge`). Only where nothing else changes the target's
    keys meanwhile (`early_target_sums`)."""

    def __init__(self, before: Future[dict[int, BucketDigest]], width: int, native: bool):
        self.before, self.width, self.native = before, width, native
        self.added: dict[int, BucketDigest] = {}

    def merge(self, w: Writer) -> MergeCounts:
        """The writer's merge, the keys it inserts added (`KeyBucketWriter.merge_noting_new`)."""
        counts, new = cast(KeyBucketWriter, w).merge_noting_new(self.width, self.native)
        for b, (count, total, hashes) in new.items():
            c, t, h = self.added.get(b, (0, 0, 0))
            self.added[b] = (c + count, t + total, h + hashes)
        return counts

    def result(self) -> dict[int, BucketDigest]:
        found = dict(self.before.result())
        for b, (count, total, hashes) in self.added.items():
            c, t, h = found.get(b, (0, 0, 0))
            found[b] = (c + count, t + total, h + hashes)
        return found


def early_target_sums(run: TaskRun, pool: ThreadPoolExecutor, width: int | None) -> TargetSums | None:
    """The target's sums started now, in a snapshot fixed before this returns (so before the
    writer commits anything), where its kind fixes one (`snapshot_sql`) and only the merges'
    inserts change its keys: no soft deletes, no history (their rows stay), no transforms (a
    filter deletes). None otherwise, or when the sums could not start: read after the merges."""
    task = run.task
    target = cast(KeyBuckets, run.target)
    if (
        width is None
        or task.deletes == "soft"
        or getattr(task.write, "history", None) is not None
        or task.transforms
        or target.snapshot_sql() is None
    ):
        return None
    taken = threading.Event()
    native = _native_hash(run)
    spec = ReadSpec(table=run.table)
    before = pool.submit(target.key_buckets, spec, task.write.keys[0], width, native, taken.set)
    while not taken.wait(0.01):
        if before.done():  # failed before its snapshot: the target is summed up after the merges
            return None
    return TargetSums(before, width, native)


def _native_hash(run: TaskRun) -> bool:
    """Whether the key buckets use the kind's own key hash (`native_key_hash`): only where
    both ends are of that kind, the only one that computes it."""
    return run.source.kind == run.target.kind and _source(run).native_key_hash("k") is not None


def deletes_by_buckets(
    run: TaskRun, w: KeyBucketWriter, sums: KeySums, early: TargetSums | None = None
) -> int:
    """Deletes under an integer key without moving every key: both databases sum up their
    keys per bucket of a key range (`BucketDigest`: count, sum and sum of a hash of each key,
    md5 or the dialect's own between two databases of it, computed in each database; the
    source's while the batches are merged); only the buckets that differ have their keys
    compared. A bucket's target keys are the source's that the
    run merged plus the deleted ones, but its source keys may include rows the watermark did
    not read (committed late, behind the pointer): count and sum alone cannot tell keys 1
    and 4 deleted from 2 and 3 arrived late, the hash sum can. The source is summed up after
    the batch reader's snapshot: a key it gained since is in no target bucket's difference,
    and every key found to differ is looked up in the source as it is now before it is
    deleted."""
    task, key = run.task, run.task.write.keys[0]
    if sums.buckets is None:  # the source is empty: every row of the target is gone
        w.open_key_stage()
        return w.delete_missing(KEY_STAGE)
    width, source = sums.width, sums.buckets
    target = early.result() if early is not None else w.target_buckets(width, _native_hash(run))
    differ = sorted(b for b, summary in target.items() if source.get(b) != summary)
    run.log("info", "deletes: buckets compared", task=task.name, buckets=len(target), differ=len(differ))
    _, differ, deleted = _single_deletes(run, w, width, source, target, differ)
    if not differ:
        return deleted
    if len(differ) <= FEW_BUCKETS:  # their keys compared in Python, read by key ranges
        gone = _gone(run, w, ranges=[_bucket_range(b, width) for b in differ])
        return deleted + w.delete_keys(sorted(gone))
    for i in range(0, len(differ), BUCKETS_PER_PASS):
        chunk = differ[i : i + BUCKETS_PER_PASS]
        w.open_key_stage()
        if w.copy_key_buckets(task.read, width, chunk) is None:
            keys = _source(run).read_key_buckets(task.read, key, width, chunk, run.batch_size)
            for batch in run.track(keys):
                w.stage_keys(batch)
        deleted += w.delete_missing_in_buckets(width, chunk)
    return deleted


def _single_deletes(
    run: TaskRun,
    w: KeyBucketWriter,
    width: int,
    source: dict[int, BucketDigest],
    target: dict[int, BucketDigest],
    differ: list[int],
) -> tuple[int, list[int], int]:
    """Deletes read off the sums, for the buckets whose target holds one key more than the
    source (most of them when deletes are few): when the target's keys are the source's and
    one more, that key is the difference of the two sums. That is proven, not assumed: with
    the key taken out, the target's digest must equal the source's (three deleted keys and
    two late ones also differ by one in count; their sums' difference is then a deleted key,
    but not the only one). The key is deleted once it is checked to be in this bucket, in the
    target and not in the source (index lookups in each). When the other buckets are few,
    their keys are compared by ranges in the same lookups (not after these). Returns the rows
    deleted of the keys read off the sums, the buckets left to compare key by key, and the
    rows deleted in all."""
    candidates: dict[int, int] = {}
    for b in differ:
        count, total, _ = source.get(b, (0, 0, 0))
        target_count, target_total, _ = target[b]
        key = target_total - total
        if target_count - count == 1 and _bucket(key, width) == b:
            candidates[b] = key
    if _native_hash(run):  # the target's kind is the source's: it has `key_buckets` too
        hashes = cast(KeyBuckets, run.target).native_key_hashes(sorted(set(candidates.values())))
    else:
        hashes = {key: key_hash(key) for key in candidates.values()}
    guess = {  # the bucket holds no other difference
        b: key for b, key in candidates.items() if target[b][2] - hashes[key] == source.get(b, (0, 0, 0))[2]
    }
    if not guess:
        return 0, differ, 0
    others = [b for b in differ if b not in guess]
    ranges = [_bucket_range(b, width) for b in others] if len(others) <= FEW_BUCKETS else []
    gone = _gone(run, w, sorted(guess.values()), ranges)
    read_off = gone.intersection(guess.values())
    deleted = w.delete_keys(sorted(read_off))
    missed = [b for b, key in guess.items() if key not in read_off]  # the sums misled: key by key
    left = sorted(missed if ranges else others + missed)
    run.log("info", "deletes: keys read off the sums", task=run.task.name, deleted=deleted, left=len(left))
    return deleted, left, deleted + w.delete_keys(sorted(gone - read_off))


def _gone(
    run: TaskRun, w: KeyBucketWriter, values: Sequence[int] = (), ranges: Sequence[tuple[int, int]] = ()
) -> set[int]:
    """The keys among `values` or in the inclusive `ranges` that the target has and the source
    has not (as it is now). The two databases are asked at once, unless the target is a SQLite
    file (`copy_while_reading`), which one connection at a time had better use."""
    task, key = run.task, run.task.write.keys[0]
    source = _source(run)
    if not run.target.capabilities.copy_while_reading:
        return w.find_keys(values, ranges) - source.find_keys(task.read, key, values, ranges)
    with ThreadPoolExecutor(1) as pool:
        found = pool.submit(source.find_keys, task.read, key, values, ranges)
        return w.find_keys(values, ranges) - found.result()


def _bucket(key: int, width: int) -> int:
    """The SQL kinds' `bucket_sql` in Python: integer division truncating toward zero."""
    return abs(key) // width * (1 if key >= 0 else -1)


def _bucket_range(bucket: int, width: int) -> tuple[int, int]:
    """The inclusive range of keys in a bucket (`_bucket`): bucket 0 spans both signs."""
    if bucket > 0:
        return bucket * width, bucket * width + width - 1
    if bucket < 0:
        return bucket * width - width + 1, bucket * width
    return -width + 1, width - 1
