"""A shop backend as app factories are usually written: blueprints, static files, downloads.

``create_app()`` uses the default registry (what gunicorn serves); tests pass a fresh
``CollectorRegistry`` so every value starts at zero.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    request,
    send_file,
    send_from_directory,
    stream_with_context,
)
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics

FILES = Path(__file__).with_name("files")

catalog = Blueprint("catalog", __name__, url_prefix="/products")
downloads = Blueprint("downloads", __name__, url_prefix="/downloads")

_PRODUCTS = {1: "kettle", 2: "teapot", 3: "mug"}


@catalog.get("/")
def index() -> dict[str, Any]:
    return {"products": sorted(_PRODUCTS.values())}


@catalog.get("/<int:product_id>")
def product(product_id: int) -> dict[str, Any]:
    if product_id not in _PRODUCTS:
        abort(404)
    return {"id": product_id, "name": _PRODUCTS[product_id], "pid": os.getpid()}


@catalog.get("/export")
def export() -> Response:
    """A CSV streamed row by row, with the request context kept for the generator."""

    fail = request.args.get("fail") is not None

    def rows() -> Iterator[str]:
        yield "id,name\n"
        for key, name in sorted(_PRODUCTS.items()):
            if fail and key == 2:
                raise RuntimeError("the product database went away mid-export")
            yield f"{key},{name}\n"

    return Response(stream_with_context(rows()), mimetype="text/csv")


@catalog.get("/broken")
def broken() -> str:
    raise RuntimeError("the product database is down")


@downloads.get("/prices.csv")
def prices() -> Response:
    # conditional=True (Flask's default): ETag, 304 and Range support.
    return send_file(FILES / "prices.csv", mimetype="text/csv")


@downloads.get("/files/<path:name>")
def files(name: str) -> Response:
    return send_from_directory(FILES, name)


@downloads.get("/receipt")
def receipt() -> Response:
    # A file built in memory, as invoices and exports often are.
    data = io.BytesIO(b"receipt #1\ntotal 9.99\n")
    return send_file(data, mimetype="text/plain", download_name="receipt.txt")


def create_app(
    config: dict[str, Any] | None = None,
    *,
    registry: CollectorRegistry | None = None,
    instrumented: bool = True,
) -> Flask:
    """The shop; ``instrumented=False`` gives the same app without flask-appmetrics."""
    app = Flask(__name__)
    app.config.update(config or {})
    if instrumented:
        FlaskMetrics(registry=registry).init_app(app)
    app.register_blueprint(catalog)
    app.register_blueprint(downloads)

    @app.get("/")
    def home() -> str:
        return '<link rel="stylesheet" href="/static/css/style.css"><h1>Shop</h1>'

    return app
