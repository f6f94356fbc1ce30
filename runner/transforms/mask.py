"""`mask`: a column of personal data hidden before anything is written (the stage, the target,
a message, a file): its value replaced by an HMAC-SHA256 keyed with a secret salt (64 hex
digits; equal values give equal digests, so the column still joins and counts, but a digest
cannot be found again by hashing guesses without the salt), or redacted to a fixed text or
NULL. The salt is resolved at the run, like a connection's secrets, and redacted from every
message."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

from runner.definitions import secrets
from runner.definitions.transforms import Mask
from runner.streams.types import Batch, Column, ColumnType
from runner.transforms.cast import text_of
from runner.transforms.registry import TRANSFORMS, Bound, Context
from runner.transforms.rows import index_of

TEXT = ColumnType("text")


def bind(spec: Mask, columns: list[Column], ctx: Context) -> Bound:
    i = index_of(columns, spec.column, ctx.where("column"))
    out = list(columns)
    if spec.method == "hash":
        assert spec.salt is not None  # `Mask._method`
        key = secrets.resolve(spec.salt, ctx.base_dir).encode()
        out[i] = replace(columns[i], type=TEXT, unmapped=None)

        keyed = hmac.new(key, digestmod=hashlib.sha256)  # copied per value: the key is set up once

        def hide(value: object) -> object:
            if value is None:
                return None
            digest = keyed.copy()
            digest.update(text_of(value).encode())
            return digest.hexdigest()
    else:
        replacement = spec.replacement
        if replacement is not None:
            out[i] = replace(columns[i], type=TEXT, unmapped=None)

        def hide(value: object) -> object:
            return None if value is None else replacement

    def apply(batch: Batch) -> Batch:
        return [(*row[:i], hide(row[i]), *row[i + 1 :]) for row in batch]

    return Bound(out, apply)


TRANSFORMS.register("mask", bind)
