"""What model calls cost: USD per million input and output tokens, per model, and the cost of usage figures."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger("core.ops")

# OpenAI's published standard prices (USD per 1M tokens, context under ~270K tokens, no batch or cache discount),
# from https://developers.openai.com/api/docs/pricing as reported on 2026-11-06 (api-evangelist, read 2026-11-05)
# and 2026-06 (morphllm.com); looked up on 2026-12-02. Cached input is billed lower; these count all input at the
# full price, so costs err high. gpt-transcribe is priced per second of audio, not per token: not in this table.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5.5": (5.00, 30.00),
    "gpt-5.4": (2.50, 15.00),
    "gpt-5.4-mini": (0.75, 4.50),
    "gpt-5.4-nano": (0.20, 1.25),
}


class Price(BaseModel):
    """One model's price: USD per million input (prompt) and output (completion) tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, allow_inf_nan=False)
    output: float = Field(ge=0, allow_inf_nan=False)


def parse_model_prices(text: str) -> dict[str, Price]:
    """MODEL_PRICES: a JSON object {"<model>": {"input": <USD per 1M>, "output": <USD per 1M>}, …}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object: {"<model>": {"input": 0.75, "output": 4.5}}')
    prices = {}
    for model, value in data.items():
        if not model.strip():
            raise ValueError("a model name is empty")
        try:
            prices[model] = Price.model_validate(value)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors())
            raise ValueError(f"{model!r}: {problems} (give USD per 1M tokens as input and output)") from None
    return prices


@dataclass(frozen=True)
class Cost:
    """The USD cost of some usage; None when a model in it has no price (then `unpriced` names them, and
    `priced_usd` is the cost of the rest)."""

    usd: float | None
    unpriced: tuple[str, ...] = ()
    priced_usd: float = 0.0


class PriceTable:
    """The defaults overridden (or extended) by MODEL_PRICES; an unknown model is unpriced and logged once."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._prices = {model: Price(input=i, output=o) for model, (i, o) in DEFAULT_PRICES.items()}
        self._prices.update(overrides or {})
        self._warned: set[str] = set()

    def price(self, model: str) -> Price | None:
        return self._prices.get(model)

    def cost(self, usage: Iterable[tuple[str, int, int]]) -> Cost:
        """The cost of (model, prompt tokens, completion tokens) figures; rows without tokens cost nothing."""
        total = 0.0
        unpriced: list[str] = []
        for model, prompt, completion in usage:
            if not (prompt or completion):
                continue
            price = self._prices.get(model)
            if price is None:
                if model not in unpriced:
                    unpriced.append(model)
                self._warn(model)
                continue
            total += (prompt * price.input + completion * price.output) / 1_000_000
        total = round(total, 10)  # float noise off, fractions of a cent kept
        return Cost(None, tuple(sorted(unpriced)), total) if unpriced else Cost(total, (), total)

    def _warn(self, model: str) -> None:
        # Once per model and process: a cost left out is said, never shown as 0.
        if model not in self._warned:
            self._warned.add(model)
            log.warning("usage.unpriced_model", extra={"model": model,
                                                       "detail": "add its price to MODEL_PRICES to see its cost"})
