"""One retry policy for calls to the outside (model, Graph API): exponential backoff with jitter, bounded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_seconds: float = 1.0
    max_wait_seconds: float = 20.0
    deadline_seconds: float = 120.0

    def retrying(self, is_transient: Callable[[BaseException], bool]) -> AsyncRetrying:
        """Tenacity retrying on errors `is_transient` accepts, re-raising the last one when it gives up."""
        return AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_random_exponential(multiplier=self.base_seconds, max=self.max_wait_seconds),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.deadline_seconds),
            reraise=True,
        )
