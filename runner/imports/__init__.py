"""Importers of the seed products' job definitions (DataZen, CData Sync) into runner YAML: one
module per product over `common` (the report, names, connections with secret placeholders,
crons, the files written)."""
