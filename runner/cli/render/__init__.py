"""Pure formatters: data in, text out, one module per command group (`render.runs` for
`runner.cli.runs`); the command modules print. Tables import rich's `Table` when they are
built, so `runner X --help` does not pay for it."""
