"""What a model provider's 429 says (how long to wait), and one adaptive limiter per model endpoint (URL + key)."""

from __future__ import annotations

import email.utils
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import TypeVar

import openai

from core.clock import Clock
from core.llm.concurrency import AdaptiveLimiter

OPENAI_URL = "https://api.openai.com/v1"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

T = TypeVar("T")


def parse_duration(text: str) -> float | None:
    """OpenAI's reset durations ("20ms", "1s", "6m0s", "1h2m3.5s"), or plain seconds; None when unreadable."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def retry_after_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """How long the provider asks us to wait: retry-after-ms, Retry-After (seconds or a date), else the reset of the
    exhausted x-ratelimit-* budget (requests or tokens); None when it says nothing."""
    lowered = {key.lower(): value for key, value in headers.items()}
    if "retry-after-ms" in lowered and (ms := parse_duration(lowered["retry-after-ms"])) is not None:
        return ms / 1000
    if "retry-after" in lowered:
        value = lowered["retry-after"]
        seconds = parse_duration(value)
        if seconds is not None:
            return seconds
        try:
            return (email.utils.parsedate_to_datetime(value) - now).total_seconds()
        except (TypeError, ValueError):
            pass
    resets = {kind: parse_duration(lowered[f"x-ratelimit-reset-{kind}"]) for kind in ("requests", "tokens")
              if f"x-ratelimit-reset-{kind}" in lowered}
    known = {kind: seconds for kind, seconds in resets.items() if seconds is not None}
    exhausted = [seconds for kind, seconds in known.items() if lowered.get(f"x-ratelimit-remaining-{kind}") == "0"]
    if exhausted:
        return max(exhausted)
    return min(known.values(), default=None)


async def call_limited(limiter: AdaptiveLimiter, clock: Clock, call: Callable[[], Awaitable[T]]) -> T:
    """Make one model call within the endpoint's limit, telling the limiter how it went (a 429 lowers the limit)."""
    permit = await limiter.acquire()
    try:
        result = await call()
    except openai.RateLimitError as error:
        limiter.rate_limited(permit, retry_after_seconds(error.response.headers, clock.now()))
        raise
    except BaseException:
        limiter.failed(permit)
        raise
    limiter.succeeded(permit)
    return result


class ModelEndpoints:
    """One limiter per model endpoint (base URL + API key): every client using the same account shares its limits."""

    def __init__(self, ceiling: int, clock: Clock, *, base_pause_seconds: float = 1.0) -> None:
        self._ceiling = ceiling
        self._clock = clock
        self._base_pause = base_pause_seconds
        self._limiters: dict[tuple[str, str], AdaptiveLimiter] = {}

    def limiter(self, base_url: str | None, api_key: str) -> AdaptiveLimiter:
        # The key is held as a digest: this table must never be where a secret leaks from (a repr, a log).
        key = ((base_url or OPENAI_URL).rstrip("/"), hashlib.sha256(api_key.encode()).hexdigest())
        if key not in self._limiters:
            self._limiters[key] = AdaptiveLimiter(self._ceiling, self._clock, name=key[0],
                                                  base_pause_seconds=self._base_pause)
        return self._limiters[key]

    def __iter__(self) -> Iterator[AdaptiveLimiter]:
        return iter(self._limiters.values())
