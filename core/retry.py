"""One retry policy for calls to the outside (model, Graph API): exponential backoff with jitter, bounded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_seconds: float = 1.0
    max_wait_seconds: float = 20.0
    deadline_seconds: float = 120.0

    def retrying(self, is_transient: Callable[[BaseException], bool],
                 paced: Callable[[BaseException], bool] | None = None) -> AsyncRetrying:
        """Tenacity retrying on errors `is_transient` accepts, re-raising the last one when it gives up.

        Errors `paced` accepts (a rate limit whose pause a limiter already enforces) are retried at once and do not
        use up attempts: only the deadline bounds them."""
        backoff = wait_random_exponential(multiplier=self.base_seconds, max=self.max_wait_seconds)
        paced_failures = 0

        def is_paced(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome is not None else None
            return error is not None and paced is not None and paced(error)

        def wait(state: RetryCallState) -> float:
            return 0.0 if is_paced(state) else backoff(state)

        def stop(state: RetryCallState) -> bool:
            nonlocal paced_failures
            if is_paced(state):
                paced_failures += 1
            out_of_time = (state.seconds_since_start or 0.0) >= self.deadline_seconds
            return out_of_time or state.attempt_number - paced_failures >= self.attempts

        return AsyncRetrying(retry=retry_if_exception(is_transient), wait=wait, stop=stop, reraise=True)
