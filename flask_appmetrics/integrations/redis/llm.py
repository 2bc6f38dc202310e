"""LLM spend and learned quota limits shared through Redis by every worker and host.

* :class:`SharedSpend` (a :class:`~flask_appmetrics.llm.budget.SpendCounter`): one key per
  day in the quota's time zone, added to with ``INCRBYFLOAT`` (micro-dollars are not worth
  an integer scheme: a day's float sum is exact to well below a cent);
* :class:`SharedLearnedLimits` (a :class:`~flask_appmetrics.llm.learned.LearnedLimits`):
  each model's calls this minute in one hash per minute, and the learned limits in one hash
  (``model`` and ``limit`` to the value and its source). A minute's first refusal of a
  model is learned once for every process (``HSETNX`` on a per-minute marker).

As for the quota, every operation goes through the app's :class:`RedisLink`: while Redis
is away the in-process store (always kept up to date) answers. Keys expire: a day's spend
two days after it, a minute's counts after two minutes, learned limits a week after the
last refusal.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ...health.windows import Clock
from ...llm.budget import InMemorySpend
from ...llm.learned import MAX_MODELS, SOURCES, InMemoryLearnedLimits, LearnedLimit
from .link import RedisLink

if TYPE_CHECKING:
    import redis

_DAY_SECONDS = 86_400
_LEARNED_TTL = 7 * _DAY_SECONDS
_SEPARATOR = "\x1f"  # cannot appear in a label value that came through our checks


class SharedSpend:
    """Every process's spend today, per day in *timezone*.

    :param link: the app's Redis link.
    :param local: this process's spend: always updated, used while Redis is away.
    """

    def __init__(
        self, link: RedisLink, local: InMemorySpend, timezone: str, *, clock: Clock = time.time
    ) -> None:
        self.link = link
        self.local = local
        self.clock = clock
        self._zone = ZoneInfo(timezone)

    def _key(self) -> str:
        day = datetime.fromtimestamp(self.clock(), self._zone).date().isoformat()
        return self.link.key("spend", "day", day)

    def add(self, usd: float) -> float:
        local = self.local.add(usd)
        key = self._key()

        def op(r: redis.Redis) -> float:
            pipe = r.pipeline(transaction=True)
            pipe.incrbyfloat(key, usd)
            pipe.expire(key, 2 * _DAY_SECONDS)
            total, _ = pipe.execute()
            return float(total)

        return self.link.run(op, lambda: local)

    def today(self) -> float:
        key = self._key()

        def op(r: redis.Redis) -> float:
            value = r.get(key)
            return float(value) if value is not None else 0.0

        return self.link.run(op, self.local.today)


class SharedLearnedLimits:
    """Every process's per-model calls this minute, and the limits learned from refusals.

    :param link: the app's Redis link.
    :param local: this process's store: always updated, used while Redis is away.
    """

    def __init__(
        self, link: RedisLink, local: InMemoryLearnedLimits, *, clock: Clock = time.time
    ) -> None:
        self.link = link
        self.local = local
        self.clock = clock
        self._limits_key = link.key("quota", "learned")

    def _minute_key(self, minute: int) -> str:
        return self.link.key("quota", "model-minute", minute)

    def note_call(self, model: str, tokens: int) -> None:
        self.local.note_call(model, tokens)
        key = self._minute_key(int(self.clock() // 60))

        def op(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.hincrby(key, f"{model}{_SEPARATOR}requests", 1)
            pipe.hincrby(key, f"{model}{_SEPARATOR}tokens", tokens)
            pipe.expire(key, 120)
            pipe.execute()

        self.link.run(op, lambda: None)

    def refused(self, model: str, limit: str, reported: int | None) -> None:
        self.local.refused(model, limit, reported)
        minute = int(self.clock() // 60)
        minute_key = self._minute_key(minute)
        limits_key = self._limits_key

        def op(r: redis.Redis) -> None:
            if reported is not None and limit in ("rpm", "tpm", "rpd", "tpd"):
                entry = json.dumps({"value": reported, "source": "reported"})
                pipe = r.pipeline(transaction=True)
                pipe.hset(limits_key, f"{model}{_SEPARATOR}{limit}", entry)
                pipe.expire(limits_key, _LEARNED_TTL)
                pipe.execute()
                return
            # The first refusal of this model this minute, in any process, learns.
            if not r.hsetnx(minute_key, f"{model}{_SEPARATOR}refused", 1):
                return
            requests, tokens = r.hmget(
                minute_key, f"{model}{_SEPARATOR}requests", f"{model}{_SEPARATOR}tokens"
            )
            current = r.hmget(limits_key, f"{model}{_SEPARATOR}rpm", f"{model}{_SEPARATOR}tpm")
            pipe = r.pipeline(transaction=True)
            for name, value, old in zip(("rpm", "tpm"), (requests, tokens), current, strict=True):
                if old is not None and json.loads(old).get("source") == "reported":
                    continue  # the API's own figure stays
                entry = json.dumps({"value": int(value or 0), "source": "observed"})
                pipe.hset(limits_key, f"{model}{_SEPARATOR}{name}", entry)
            pipe.expire(limits_key, _LEARNED_TTL)
            pipe.execute()

        self.link.run(op, lambda: None)

    def limits(self) -> tuple[LearnedLimit, ...]:
        limits_key = self._limits_key

        def op(r: redis.Redis) -> tuple[LearnedLimit, ...]:
            found: list[LearnedLimit] = []
            for field, raw in r.hgetall(limits_key).items():
                name = field.decode("utf-8", "replace") if isinstance(field, bytes) else field
                model, _, limit = name.rpartition(_SEPARATOR)
                try:
                    entry = json.loads(raw)
                    value, source = float(entry["value"]), str(entry["source"])
                except (ValueError, KeyError, TypeError):
                    continue  # not ours, or damaged: skipped rather than failing a scrape
                if model and limit in ("rpm", "tpm", "rpd", "tpd") and source in SOURCES:
                    found.append(LearnedLimit(model, limit, value, source))
                if len(found) >= 2 * MAX_MODELS:
                    break
            return tuple(found)

        return self.link.run(op, self.local.limits)
