"""One tracked call over a whole stream: generators and async iterators of LLM chunks.

A streamed LLM call is one call that lasts until its last chunk. The wrappers here
delegate to the stream as ``yield from`` would (``send``, ``throw`` and ``close`` reach it;
a generator's return value is kept) while a *tracker* sees the call through:

* the tracker is entered when the first chunk is asked for (a stream never iterated made
  no request) and exited when the stream ends: exhausted, raising, or closed early (its
  consumer called ``close()``/``aclose()``, or dropped it and it was collected: the tracker
  sees ``GeneratorExit``, a cancelled task ``CancelledError``);
* each chunk is handed to ``tracker.chunk()`` as soon as it arrives, before the consumer
  sees it, so the tracker can time the first and the last one;
* every pull from the stream runs inside ``tracker.resumed()``, a context of the tracker's
  choosing (the recording helpers use it to tell calls made inside the stream that they
  are part of it).

Pure Python: what a tracker records, and where, is the caller's business
(:class:`flask_appmetrics.helpers.track_gemini_call` is one).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class StreamTracker(Protocol):
    """What the wrappers need from a tracker."""

    def __enter__(self) -> Any: ...

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> Any: ...

    def chunk(self, item: object) -> None:
        """A chunk arrived."""
        ...

    def resumed(self) -> AbstractContextManager[Any]:
        """The context each pull from the stream runs in."""
        ...


def track_iterator(
    make_tracker: Callable[[], StreamTracker], start: Callable[[], Iterator[T]]
) -> Generator[T, Any, Any]:
    """A generator over ``start()``'s items, tracked by ``make_tracker()`` (both called at the
    first ``next()``)."""
    tracker = make_tracker()
    with tracker:
        with tracker.resumed():
            inner = start()
            try:
                item = next(inner)
            except StopIteration as stop:
                return stop.value
        tracker.chunk(item)
        while True:
            try:
                sent = yield item
            except GeneratorExit:
                close = getattr(inner, "close", None)
                if close is not None:
                    close()  # its own cleanup (the HTTP stream) runs now
                raise
            except BaseException as thrown:  # handed on, as yield from does
                throw = getattr(inner, "throw", None)
                if throw is None:
                    raise
                try:
                    with tracker.resumed():
                        item = throw(thrown)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    with tracker.resumed():
                        item = next(inner) if sent is None else inner.send(sent)  # type: ignore[attr-defined]
                except StopIteration as stop:
                    return stop.value
            tracker.chunk(item)


async def track_async_iterator(
    make_tracker: Callable[[], StreamTracker], start: Callable[[], AsyncIterator[T]]
) -> AsyncGenerator[T, Any]:
    """An async generator over ``start()``'s items, tracked as :func:`track_iterator` does."""
    tracker = make_tracker()
    with tracker:
        with tracker.resumed():
            inner = start()
            try:
                item = await inner.__anext__()
            except StopAsyncIteration:
                return
        tracker.chunk(item)
        while True:
            try:
                sent = yield item
            except GeneratorExit:
                close = getattr(inner, "aclose", None)
                if close is not None:
                    await close()
                raise
            except BaseException as thrown:
                athrow = getattr(inner, "athrow", None)
                if athrow is None:
                    raise
                try:
                    with tracker.resumed():
                        item = await athrow(thrown)
                except StopAsyncIteration:
                    return
            else:
                try:
                    with tracker.resumed():
                        if sent is None:
                            item = await inner.__anext__()
                        else:
                            item = await inner.asend(sent)  # type: ignore[attr-defined]
                except StopAsyncIteration:
                    return
            tracker.chunk(item)
