"""`python -m runner` and the `runner` script: the collector is paused before the CLI's modules
are imported (`runner.cli.app.main` runs it again once the command line is parsed).

pydantic looks for plugins (the `pydantic` entry points of every installed distribution, ~5–10
ms of a start in a venv of a hundred distributions) when it builds its first validator; runner
uses none, so the process turns the lookup off unless `PYDANTIC_DISABLE_PLUGINS` is set already
(an empty value loads every plugin, as pydantic does without runner). Hooks do not see the
variable: they run with an environment of their own (`runner.runs.events`)."""

import gc
import os

gc.disable()
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from runner.cli.app import main  # noqa: E402

if __name__ == "__main__":
    main()
