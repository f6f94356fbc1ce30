"""The HTTP API and status page (`runner daemon --http`, `runner serve`)."""
