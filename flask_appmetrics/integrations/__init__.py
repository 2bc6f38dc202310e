"""Integrations with other libraries, each in its own module and optional extra.

* :mod:`flask_appmetrics.integrations.caching`: hits and misses of a Flask-Caching ``Cache``
  (extra ``caching``).
* :mod:`flask_appmetrics.integrations.pybreaker`: a listener for ``pybreaker`` circuit
  breakers (extra ``pybreaker``).
* :mod:`flask_appmetrics.integrations.genai`: token counts from google-genai responses
  (works on the objects, needs no import of google-genai).

Import the module you need; this package imports none of them, so that a missing extra
only matters to the code that uses it.
"""

from __future__ import annotations

__all__: list[str] = []
