"""Exemplars: the trace id of an observation, on the histogram bucket it fell in.

A scraper that negotiates OpenMetrics gets, on each bucket of
``http_request_duration_seconds`` and ``gemini_api_duration_seconds``, the latest
observation that came with a trace id: ``# {trace_id="..."} <value> <time>``. In process,
prometheus_client keeps it on the bucket; in multiprocess mode, where prometheus_client
keeps none, each process writes it to its exemplar file
(:mod:`.multiprocess.exemplar_file`) and :func:`attach_exemplars` puts the latest of each
bucket on the aggregated page.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from .multiprocess.exemplar_file import BucketKey, Stored, bucket_key, process_file

#: The exemplar's one label.
TRACE_LABEL = "trace_id"
_HEX = frozenset("0123456789abcdef")
_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16


class TraceId(str):
    """A trace id a tracer gave (32 lowercase hex digits, not all zero: see
    :func:`trace_id`), noted as it is; any other string is a ``traceparent`` header."""

    __slots__ = ()


def trace_id(value: str) -> TraceId | None:
    """*value* as a :class:`TraceId`, if it is one (32 lowercase hex digits, not all
    zero); else ``None``."""
    if len(value) != 32 or value == _INVALID_TRACE or not _HEX.issuperset(value):
        return None
    return TraceId(value)


def parse_traceparent(header: str) -> str | None:
    """The trace id of a W3C ``traceparent`` header whose sampled flag is set, as W3C Trace
    Context reads it (``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>``, lowercase,
    neither id all zero; a later version may add fields after a dash; version ``ff`` is
    invalid); ``None`` for anything else."""
    if len(header) < 55 or header[2] != "-" or header[35] != "-" or header[52] != "-":
        return None
    version = header[:2]
    if version == "ff" or not _HEX.issuperset(version):
        return None
    if len(header) != 55 and (version == "00" or header[55] != "-"):
        return None
    trace, span, flags = header[3:35], header[36:52], header[53:55]
    if not _HEX.issuperset(span) or span == _INVALID_SPAN or not _HEX.issuperset(flags):
        return None
    if not int(flags, 16) & 1:
        return None  # not sampled: no trace to link to
    return trace_id(trace)


def parse_trace_id(value: str) -> str | None:
    """The trace id *value* gives: a :class:`TraceId` as it is, any other string read as a
    ``traceparent`` header (:func:`parse_traceparent`)."""
    if type(value) is TraceId:
        return value
    return parse_traceparent(value)


def note_exemplar(
    child: Any, trace: str, value: float, *, index: int | None = None, key: str | None = None
) -> None:
    """Make (*trace*, *value*) the exemplar of the bucket of the histogram *child* (a
    labelled child, or an unlabelled histogram) that *value* falls in.

    :param trace: a tracer's :class:`TraceId` or a ``traceparent`` header (see
        :func:`parse_trace_id`); nothing is noted when it holds no sampled trace.
    :param index: the bucket's index, when the caller knows it.
    :param key: the bucket's key in the exemplar file, when the caller keeps it.
    """
    trace_id = parse_trace_id(trace)
    if trace_id is None:
        return
    bounds = child._upper_bounds  # prometheus_client private API, stable since 0.4
    if index is None:
        index = bisect_left(bounds, value)
    now = time.time()
    if not child._sum._multiprocess:
        child._buckets[index].set_exemplar(Exemplar({TRACE_LABEL: trace_id}, value, now))
        return
    exemplars = process_file()
    if exemplars is None:
        return
    if key is None:
        key = exemplar_key(child, bounds[index])
    exemplars.write(key, trace_id, value, now)


def exemplar_key(child: Any, bound: float) -> str:
    """The key of *child*'s bucket *bound* in the exemplar file."""
    labels = dict(zip(child._labelnames, child._labelvalues, strict=True))
    labels["le"] = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return bucket_key(child._name + "_bucket", labels)


def attach_exemplars(metrics: Iterable[Metric], exemplars: Mapping[BucketKey, Stored]) -> None:
    """Put each stored exemplar on its bucket sample in *metrics* (changed in place)."""
    if not exemplars:
        return
    names = {sample for sample, _ in exemplars}
    for metric in metrics:
        if metric.type != "histogram" or metric.name + "_bucket" not in names:
            continue
        samples = metric.samples
        for i, sample in enumerate(samples):
            if sample.name not in names:
                continue
            stored = exemplars.get((sample.name, tuple(sorted(sample.labels.items()))))
            if stored is not None:
                trace, value, timestamp = stored
                samples[i] = sample._replace(
                    exemplar=Exemplar({TRACE_LABEL: trace}, value, timestamp)
                )
