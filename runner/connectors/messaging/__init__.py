"""What every message broker kind shares: the `write` model of a task that publishes (payload,
key and header templates), the encoding of canonical values as JSON, and the writer that turns
changed rows and deleted keys into messages and waits for the broker's confirmations before a
pointer may move. Each broker is one module beside it (`runner.connectors.rabbitmq`, ...)
supplying a `Publisher`."""
