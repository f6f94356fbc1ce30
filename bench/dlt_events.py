"""dlt's side of the peers benchmark (bench/peers.py runs it with the peers' venv).

    python dlt_events.py replace|merge PIPELINES_DIR

Run in a folder whose `.dlt/config.toml` and `.dlt/secrets.toml` (written by bench/peers.py
in the harness's temporary folder) name the source (`sources.sql_database.credentials`) and
the target (`destination.postgres.credentials`). `replace` copies `public.events` in full;
`merge` reads the rows whose `updated_at` is past the pipeline's last value (dlt's
incremental, kept in the pipeline's state) and merges them on `id`. The pyarrow backend reads
the source in Arrow batches. Prints the load info's rows per table as one JSON line.
"""

import json
import sys

import dlt
from dlt.sources.sql_database import sql_table


def main() -> None:
    mode, pipelines_dir = sys.argv[1], sys.argv[2]
    incremental = dlt.sources.incremental("updated_at") if mode == "merge" else None
    events = sql_table(table="events", backend="pyarrow", incremental=incremental)
    pipeline = dlt.pipeline(
        pipeline_name="bench_events",
        destination="postgres",
        dataset_name="public",
        pipelines_dir=pipelines_dir,
    )
    hints = {"primary_key": "id"} if mode == "merge" else {}
    pipeline.run(events, write_disposition=mode, **hints)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    print(json.dumps({"row_counts": counts}))


if __name__ == "__main__":
    main()
