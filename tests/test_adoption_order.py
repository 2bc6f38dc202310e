"""A host app's own module recording into ``http_requests_total``, defined before or after
``init_app``, on prometheus_client's default ``REGISTRY``.

Each case runs in a fresh interpreter: the default registry lives as long as the process,
and the order of definition is the point. The host app is a package with an app factory
and a blueprint module, the module either imported at the top of the package (before
``init_app``) or inside the factory (after it), as real apps do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

FACTORY = """
from flask import Flask
from flask_appmetrics import FlaskMetrics

metrics = FlaskMetrics()
{top_import}

def create_app():
    app = Flask("shop")
    metrics.init_app(app)
    {factory_import}
    app.register_blueprint(orders.bp)
    return app
"""

ORDERS = """
from flask import Blueprint
from prometheus_client import Counter

from . import metrics

{definition}

bp = Blueprint("orders", __name__)


@bp.post("/orders")
def create_order():
    return "", 201


def import_legacy_orders(n):
    # A batch job of the app counting the requests it replayed, in the same series.
    http_requests_total.labels("POST", "/orders", "201").inc(n)
"""

ACCESSOR = 'http_requests_total = metrics.metric("http_requests_total")'
OWN_COUNTER = (
    'http_requests_total = Counter("http_requests_total", "Total HTTP requests", '
    '["method", "endpoint", "status"])'
)

DRIVER = """
import json
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import EnvironBuilder, run_wsgi_app

try:
    from shop import create_app
    app = create_app()
except ValueError as error:
    print(json.dumps({"error": str(error)}))
    raise SystemExit(0)

from shop import orders


def call(method, path):
    env = EnvironBuilder(method=method, path=path).get_environ()
    body, status, headers = run_wsgi_app(app, env)
    try:
        b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status


statuses = [call("POST", "/orders") for _ in range(3)]
orders.import_legacy_orders(2)
page = b"".join(run_wsgi_app(app, EnvironBuilder(path="/metrics").get_environ())[0])
families = [f.name for f in text_string_to_metric_families(page.decode())]
labels = {"method": "POST", "endpoint": "/orders", "status": "201"}
print(json.dumps({
    "statuses": statuses,
    "value": REGISTRY.get_sample_value("http_requests_total", labels),
    "http_requests_families": families.count("http_requests"),
}))
"""


def _run(tmp_path: Path, *, before: bool, definition: str) -> dict[str, Any]:
    package = tmp_path / "shop"
    package.mkdir()
    imports = {
        "top_import": "from . import orders" if before else "",
        "factory_import": "pass" if before else "from . import orders",
    }
    (package / "__init__.py").write_text(FACTORY.format(**imports))
    (package / "orders.py").write_text(ORDERS.format(definition=definition))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(DRIVER)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("before", [True, False], ids=["module-before-init_app", "module-after"])
def test_the_accessor_shares_the_extensions_counter_in_either_order(
    tmp_path: Path, before: bool
) -> None:
    result = _run(tmp_path, before=before, definition=ACCESSOR)
    assert result["statuses"] == ["201 CREATED"] * 3
    # Three requests the extension counted plus two the module counted, in one series.
    assert result["value"] == 5.0
    assert result["http_requests_families"] == 1


def test_an_own_counter_defined_before_init_app_is_adopted(tmp_path: Path) -> None:
    result = _run(tmp_path, before=True, definition=OWN_COUNTER)
    assert result["value"] == 5.0
    assert result["http_requests_families"] == 1


def test_an_own_counter_defined_after_init_app_is_refused_by_prometheus_client(
    tmp_path: Path,
) -> None:
    """What the HTTP guide states: the registry refuses a second collector of the name in the
    module's own constructor, before flask-appmetrics is involved; metrics.metric() is
    the way for a module that runs after init_app."""
    result = _run(tmp_path, before=False, definition=OWN_COUNTER)
    assert "Duplicated timeseries" in result["error"]
