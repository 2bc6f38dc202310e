"""``python -m example_app``: serve the example backend on 127.0.0.1:5000."""

from __future__ import annotations

import logging

from . import create_app

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    create_app().run(host="127.0.0.1", port=5000)
