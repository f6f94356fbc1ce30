"""The `http` kind: a REST API as a source (paginated endpoints) and as a target (a request per
changed row or deleted key: reverse ETL)."""
