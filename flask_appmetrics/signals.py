"""Signals app and library code send; the extension's receivers record them.

Sending a signal when no app has flask-appmetrics installed is a no-op (blinker calls no
receiver), so code can report events without importing any metric object. The extension
connects its receivers with ``sender=app`` and strong references, so events are recorded
into the sending app's registry only. Send with the app as sender, for example
``cache_event.send(current_app._get_current_object(), operation="get", hit=True)``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()
