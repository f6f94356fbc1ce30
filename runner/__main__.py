"""`python -m runner` and the `runner` script: the collector is paused before the CLI's modules
are imported (`runner.cli.app.main` runs it again once the command line is parsed)."""

import gc

gc.disable()

from runner.cli.app import main  # noqa: E402

if __name__ == "__main__":
    main()
