"""Change detection: one module per strategy (full, watermark, hash) and what they share."""
