"""The guard's rule, resource by resource: what needs authorisation under each
``APPMETRICS_AUTH_HEALTH``, and one run of the ``auth=`` decorator per request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from flask_appmetrics.settings import AuthSettings
from flask_appmetrics.web.guard import Guard, Resource

TOKEN = "a-token-long-enough-to-pass"
SUMMARY = {"status": "healthy", "recent_errors_5min": 0, "checks": {"db": {}}}


def guard(health: str, decorator: Callable[..., Any] | None = None) -> Guard:
    return Guard(AuthSettings(token=TOKEN, username=None, password=None, health=health), decorator)


@pytest.mark.parametrize(
    ("health", "protected"),
    [
        ("details", {"metrics", "details"}),
        ("all", {"metrics", "health", "readyz", "details"}),
        ("none", {"metrics"}),
    ],
)
def test_each_resource_is_protected_as_auth_health_says(health: str, protected: set[str]) -> None:
    resources: tuple[Resource, ...] = ("metrics", "health", "readyz", "details")
    assert {r for r in resources if guard(health).protects(r)} == protected


@pytest.mark.parametrize("health", ["details", "all", "none"])
def test_an_authorised_request_is_refused_nothing(health: str) -> None:
    judge = guard(health)
    with Flask(__name__).test_request_context(headers={"Authorization": f"Bearer {TOKEN}"}):
        assert all(judge.refusal(r) is None for r in ("metrics", "health", "readyz", "details"))
        assert judge.sees_details()
        assert judge.visible(SUMMARY) == SUMMARY


def test_an_anonymous_request_gets_the_summary_only_and_no_page() -> None:
    judge = guard("details")
    with Flask(__name__).test_request_context():
        assert judge.refusal("health") is None
        assert judge.refusal("readyz") is None
        refused = judge.refusal("details")
        assert refused is not None
        assert refused.status_code == 401
        assert not judge.sees_details()
        assert judge.visible(SUMMARY) == {"status": "healthy", "recent_errors_5min": 0}


def test_the_decorator_runs_once_per_request_whatever_the_questions() -> None:
    runs: list[int] = []

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper() -> Any:
            runs.append(1)
            return view()

        return wrapper

    judge = Guard(AuthSettings(token=None, username=None, password=None, health="all"), decorator)
    app = Flask(__name__)
    for _ in range(2):
        with app.test_request_context():
            assert judge.refusal("health") is None
            assert judge.sees_details()
            assert judge.refusal("details") is None
    assert len(runs) == 2


def test_the_decorators_exception_is_raised_and_a_failure_of_ours_is_on_failure() -> None:
    class Broken(Exception):
        pass

    def refusing(view: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper() -> Any:
            raise Broken

        return wrapper

    app = Flask(__name__)
    only_decorator = Guard(
        AuthSettings(token=None, username=None, password=None, health="all"), refusing
    )
    with app.test_request_context(), pytest.raises(Broken):
        only_decorator.refusal("health", on_failure=lambda: app.response_class(status=503))

    class UnencodableToken(str):
        def encode(self, *args: Any, **kwargs: Any) -> bytes:
            raise RuntimeError("broken comparison")

    # The comparison itself fails: a failure of ours, not a refusal.
    token = UnencodableToken(TOKEN)
    broken = Guard(AuthSettings(token=token, username=None, password=None, health="all"))
    with app.test_request_context(headers={"Authorization": f"Bearer {TOKEN}"}):
        answer = broken.refusal("health", on_failure=lambda: app.response_class(status=503))
        assert answer is not None
        assert answer.status_code == 503
        with pytest.raises(RuntimeError, match="broken comparison"):
            broken.refusal("metrics")  # no on_failure: it propagates
