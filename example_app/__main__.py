"""``python -m example_app [--host H] [--port P] [--traffic N]``: serve the example backend.

Defaults to http://127.0.0.1:5000 with the offline LLM, an in-memory cache and no Sentry:
nothing outside the machine is needed. ``--traffic N`` sends N requests from a background
thread once the server is up (see :mod:`example_app.traffic`), so /metrics and the status
page have something to show.
"""

from __future__ import annotations

import argparse
import logging
import threading

from . import create_app, traffic


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument(
        "--traffic",
        type=int,
        nargs="?",
        const=300,
        default=0,
        metavar="N",
        help="send N requests (default 300) to the server in the background",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = create_app()
    if args.traffic > 0:
        url = f"http://{args.host}:{args.port}"

        def drive() -> None:
            if traffic.wait_until_up(url):
                statuses = traffic.run(url, args.traffic, concurrency=2, pause=0.2)
                logging.getLogger("example_app").info(
                    "traffic done: %s", dict(sorted(statuses.items()))
                )

        threading.Thread(target=drive, name="traffic", daemon=True).start()
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
