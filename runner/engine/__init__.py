"""The engine: connectors (readers and writers) per connection type, and job runs."""
