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

#: A cache lookup or write. Sent by the app (sender: the Flask app) with ``hit``, ``True``
#: for a hit and ``False`` for a miss; ``operation``, the cache operation (``"get"``,
#: ``"set"``, ...; default ``"get"``); and ``layer``, the name of the cache layer
#: (``"memory"``, ``"redis"``) or ``None``. Recorded in ``cache_operations_total`` and,
#: with a layer, ``cache_layer_operations_total``.
cache_event = _signals.signal("appmetrics.cache-event")

#: A finished call to the Gemini API (or another LLM API). Sender: the Flask app.
#: Keywords: ``endpoint`` (the app's route or API method the call served) and ``model``
#: (label values, bounded); ``status``, ``"success"``, ``"error"``, ``"cancelled"`` (a
#: stream closed before its end) or ``"rejected"`` (a circuit breaker refused the call
#: before it reached the API: counted as such, and nothing else); ``duration``, seconds or
#: ``None``; ``tokens``, the total token count or ``None``; ``input_tokens``,
#: ``output_tokens``, ``thoughts_tokens``, ``cached_tokens``, the breakdown, each an int or
#: ``None``; ``usage_metadata``, a google-genai ``GenerateContentResponse`` or its
#: ``usage_metadata`` (or ``None``), from which the missing counts (and, from a response,
#: the finish reasons and model version) are taken. Optional: ``operation``
#: (``"generate_content"``, ``"embeddings"`` or ``"count_tokens"``); ``provider``
#: (``"gcp.gemini"``, ``"gcp.vertex_ai"`` or ``"gcp.gen_ai"``); ``error_type`` for an
#: ``"error"`` (see :mod:`flask_appmetrics.integrations.genai.errors`; an unknown value
#: counts as ``_OTHER``); ``refused_limit`` (``"rpm"``, ``"tpm"``, ``"rpd"``, ``"tpd"`` or
#: ``"unknown"``) and ``refused_value`` for a ``RESOURCE_EXHAUSTED`` error; ``finish_reasons``
#: (a list of Gemini finish reasons); ``response_model``; ``time_to_first_chunk`` (seconds,
#: for a stream). The call also counts as one request (and its tokens) against the quota,
#: and its estimated cost against the day's spend.
gemini_call = _signals.signal("appmetrics.gemini-call")

#: Something happened to a circuit breaker. Sender: the Flask app. Keywords: ``service``,
#: the protected service (label value, bounded); ``event``, one of ``"success"``,
#: ``"failure"``, ``"rejected"`` (a call refused while open), ``"state_change"`` (the breaker
#: entered ``state``) or ``"state"`` (report the current ``state`` without counting a
#: transition, e.g. when a breaker is registered); ``state``, ``"closed"``, ``"half_open"``
#: or ``"open"`` for the two state events, else ``None``.
circuit_breaker_event = _signals.signal("appmetrics.circuit-breaker-event")

#: API usage to count against the quota, for calls not recorded through
#: :data:`gemini_call`. Sender: the Flask app. Keywords: ``requests`` (int, default 1) and
#: ``tokens`` (int, default 0).
quota_usage = _signals.signal("appmetrics.quota-usage")

#: A business event for a metric the app declared with ``metrics.counter``/``gauge``/
#: ``histogram``. Sender: the Flask app. Keywords: ``metric``, the metric's name;
#: ``value``, the amount to add (counter), the value to set (gauge) or to observe
#: (histogram), default 1; ``labels``, a mapping of label name to value (or ``None``).
business_event = _signals.signal("appmetrics.business-event")

#: flask-appmetrics finished initialising an app. Sender: the Flask app; no keywords.
#: Integrations use it to report state they hold (a circuit breaker's current state) to
#: apps created after them.
app_initialized = _signals.signal("appmetrics.app-initialized")
