"""Sync: the hub's uploader and the council's service.

httpx imports its own command-line client (rich, click, pygments: about 4 MB resident on a
hub) whenever those packages are installed, and they are, for the `hearth` CLI. The hub
never uses httpx's command line, so it is marked absent before httpx is first imported;
httpx is written to fall back when it is missing (`httpx.main` then explains itself).
"""

import sys

if "httpx._main" not in sys.modules:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # import then raises
