"""Real third-party Flask apps with flask-appmetrics added: their own suites stay green.

The apps are the examples in Flask's source distribution (flaskr, the tutorial's blog;
the JavaScript example), fetched from the package index once per machine (see
``tests/support/hosts/third_party/suites.py``). Each suite runs in a subprocess with warnings as
errors; a middleware of ours counts the requests its test client makes, and the
extension must have recorded exactly those.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry

from flask_appmetrics import FlaskMetrics
from tests.support.hosts.third_party import suites
from tests.support.wsgi import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flask_source() -> Path:
    try:
        return suites.flask_source()
    except suites.Unavailable as exc:
        pytest.skip(f"the package index is unreachable: {exc}")


@pytest.mark.parametrize("suite", suites.SUITES, ids=[s.name for s in suites.SUITES])
def test_the_apps_own_suite_passes_and_every_request_is_recorded(
    suite: suites.Suite, flask_source: Path, tmp_path: Path
) -> None:
    outcome = suites.run(suite, flask_source, tmp_path)
    assert outcome.returncode == 0, outcome.output
    assert " passed" in outcome.output
    assert "warning" not in outcome.output.lower(), outcome.output
    assert outcome.apps, "the plugin instrumented no app"
    served = sum(app["requests_served"] for app in outcome.apps)
    assert served > 0, "the suite made no request"
    for app in outcome.apps:
        assert app["http_requests_total"] == app["requests_served"], app
        assert app["http_request_duration_seconds_count"] == app["requests_served"], app
        assert app["http_requests_in_progress"] == 0, app
        assert app["internal_errors"] == 0, app


# -- flaskr browsed as a browser does, behind a WSGI server ------------------------------------


@pytest.fixture
def flaskr(flask_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(flask_source / "examples" / "tutorial"))
    import flaskr

    try:
        yield flaskr
    finally:
        for name in [n for n in sys.modules if n == "flaskr" or n.startswith("flaskr.")]:
            del sys.modules[name]


def _flaskr_app(flaskr: Any, tmp_path: Path, registry: CollectorRegistry) -> Flask:
    from flaskr.db import init_db

    app: Flask = flaskr.create_app({"TESTING": True, "DATABASE": str(tmp_path / "blog.sqlite")})
    FlaskMetrics(registry=registry).init_app(app)
    with app.app_context():
        init_db()
    return app


def test_flaskr_browsed_with_its_stylesheet(flaskr: Any, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    app = _flaskr_app(flaskr, tmp_path, registry)
    form = {"username": "ada", "password": "analytical"}
    assert serve(app, "/auth/register", method="POST", data=form).status == 302
    login = serve(app, "/auth/login", method="POST", data=form)
    assert login.status == 302
    cookie = login.headers["Set-Cookie"].split(";", 1)[0]
    post = {"title": "Notes", "body": "on the engine"}
    assert serve(app, "/create", method="POST", data=post, headers={"Cookie": cookie}).status == 302
    pages = 0
    for _ in range(10):
        index = serve(app, "/", headers={"Cookie": cookie})
        assert b"on the engine" in index.body
        css = serve(app, "/static/style.css")
        assert css.body == (Path(flaskr.__file__).parent / "static" / "style.css").read_bytes()
        pages += 1

    def total(method: str, endpoint: str, status: str) -> float | None:
        labels = {"method": method, "endpoint": endpoint, "status": status}
        return registry.get_sample_value("http_requests_total", labels)

    assert total("GET", "/", "200") == pages
    assert total("GET", "/static/<path:filename>", "200") == pages
    assert total("POST", "/auth/register", "302") == 1
    assert total("POST", "/create", "302") == 1
    in_progress = [
        s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "http_requests_in_progress"
    ]
    assert set(in_progress) <= {0.0}
    # The blog's own data is the blog's: one user, one post.
    with sqlite3.connect(tmp_path / "blog.sqlite") as db:
        assert db.execute("SELECT count(*) FROM user").fetchone() == (1,)
        assert db.execute("SELECT title FROM post").fetchall() == [("Notes",)]
