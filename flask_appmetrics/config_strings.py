"""Configuration values given as strings, the way the environment gives them.

``APPMETRICS_QUOTA_RPM="15"`` copied from ``os.environ`` into ``app.config`` means 15, and
``"true"`` means ``True``: each function here turns the string a key of its type may be
given as into that type, where the string can mean one thing only, and raises
:class:`ValueError` (the reason, without the key: :mod:`flask_appmetrics.config` adds it)
for any other. Values that are not strings are not this module's business.

Flask's ``app.config.from_prefixed_env()`` parses JSON before we see the value: ``15``,
``true``, ``null`` and ``[0.1, 1]`` arrive typed, and only what is not JSON (``0.1,0.5,1``,
``/internal``, ``yes``) arrives as a string. Both routes end in the same setting.
"""

from __future__ import annotations

import json
from typing import Any

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
#: How an environment variable says "none" for a key whose value may be ``None``.
_NONE = frozenset({"none", "null"})


def is_none(text: str) -> bool:
    """Whether *text* says "none" (``None``, ``null``, any case): for keys where no valid
    value can be spelt that way (numbers, paths), so it cannot mean anything else."""
    return text.strip().lower() in _NONE


def boolean(text: str) -> bool:
    """``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``, in any case."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected true or false (also yes/no, on/off, 1/0)")


def integer(text: str) -> int:
    """A whole number in decimal (``"15"``, ``" 1_500 "``); ``"1.5"`` is refused."""
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("expected an integer") from None


def number(text: str) -> float:
    """A decimal number (``"0.5"``, ``"5"``, ``"1e-3"``); range and finiteness are the
    reader's to check."""
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError("expected a number") from None


def items(text: str) -> list[Any]:
    """The items of a list: a JSON array (``'["a", "b"]'``) or comma-separated values
    (``"a, b"``, each stripped, empty ones dropped: ``""`` is the empty list).

    A JSON array is read as JSON: split at its commas, its brackets and quotes would
    become part of the values.
    """
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError as error:
            raise ValueError(f"starts with '[' but is not a JSON array ({error})") from None
        if not isinstance(value, list):  # pragma: no cover - "[" starts arrays only
            raise ValueError("expected a JSON array")
        return value
    return [part.strip() for part in text.split(",") if part.strip()]


def mapping(text: str) -> dict[str, Any]:
    """A JSON object (``'{"traces_sample_rate": 0.1}'``)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"expected a JSON object ({error})") from None
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value
