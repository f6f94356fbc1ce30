"""The data contract between any source and any target: column types, batches of canonical
values, positions (pointers), and the helpers that carry them (cancel, read-ahead, fault points)."""
