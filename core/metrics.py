"""Prometheus metrics: the service's counters and histograms, kept per client, and the text GET /metrics serves.

prometheus-client keeps a metric's values in a process-global place by design: with PROMETHEUS_MULTIPROC_DIR in the
environment *when it is imported* every value lives in memory-mapped files in that folder, one set per process, and a
scrape adds the files of every process up (gunicorn's workers, and those that died: counters never go back). The
objects below are built once per process (run_services) and reached through Services; in multiprocess mode there must
be one `Metrics` per process, since two would write the same keys of that process's files.

What the store knows (conversations due, the oldest one's wait, flags, the effects outbox) is read at scrape time in
one read transaction (`ScrapeStore.backlog`), never on the acknowledgement path, and reported beside the files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import (CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest,
                               values)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from core.ops.prices import PriceTable
from core.storage.records import ClientBacklog

# The label of deliveries that named no client (unknown WABA or number): folder names never start with "_".
UNROUTED = "_unrouted"
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MODEL_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


def multiprocess_dir() -> str | None:
    """The folder prometheus-client writes to, when it chose multiprocess mode at import (else None)."""
    chosen = values.ValueClass is not values.MutexValue
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") if chosen else None


@dataclass
class ClientMetrics:
    """One client's labelled children, made once: the hot paths increment them without a label lookup."""

    ack_seconds: Histogram
    turns: Counter
    flagged: Counter
    fallbacks: dict[str, Counter] = field(default_factory=dict)
    sends: dict[str, Counter] = field(default_factory=dict)
    send_errors: dict[str, Counter] = field(default_factory=dict)
    models: dict[str, ModelMetrics] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelMetrics:
    """One (client, model) pair's children."""

    calls_ok: Counter
    calls_failed: Counter
    seconds: Histogram
    prompt_tokens: Counter
    completion_tokens: Counter
    cost_usd: Counter


class Metrics:
    """The counters and histograms of one process; `registry` is where they are registered in single-process mode."""

    def __init__(self, registry: CollectorRegistry | None = None, prices: PriceTable | None = None) -> None:
        # `_created` timestamps (single-process mode only) would be a second series per counter that nobody graphs.
        disable_created_metrics()
        self.multiprocess_dir = multiprocess_dir()
        # In multiprocess mode a scrape reads the files, so the objects are registered nowhere.
        self.registry = registry if registry is not None else CollectorRegistry()
        into = None if self.multiprocess_dir else self.registry
        # Its _count is the number of deliveries acknowledged: no counter beside it (one increment less per 200).
        self._ack_seconds = Histogram("bot_webhook_ack_seconds", "Webhook deliveries acknowledged (200) and the time "
                                      "from arrival to the 200, by client.", ["client"], buckets=ACK_BUCKETS,
                                      registry=into)
        self._turns = Counter("bot_turns", "Turns stored: a batch of a person's messages answered.", ["client"],
                              registry=into)
        self._fallbacks = Counter("bot_fallbacks", "Fallback messages sent instead of the model's answer, by reason.",
                                  ["client", "reason"], registry=into)
        self._flagged = Counter("bot_conversations_flagged", "Times a turn or a send flagged a conversation for a "
                                "person.", ["client"], registry=into)
        self._model_calls = Counter("bot_model_calls", "Model calls (each attempt), by result.",
                                    ["client", "model", "result"], registry=into)
        self._model_seconds = Histogram("bot_model_call_seconds", "Duration of one model call attempt.",
                                        ["client", "model"], buckets=MODEL_BUCKETS, registry=into)
        self._tokens = Counter("bot_model_tokens", "Tokens the model reported, by kind (prompt, completion).",
                               ["client", "model", "kind"], registry=into)
        self._sends = Counter("bot_whatsapp_sends", "Message parts sent, by result (sent, sandbox, failed).",
                              ["client", "result"], registry=into)
        self._send_errors = Counter("bot_whatsapp_send_errors", "Graph API errors on sends (each attempt), by code.",
                                    ["client", "code"], registry=into)
        # Priced from the tokens as they are reported (MODEL_PRICES over the defaults); an unpriced model adds no cost
        # here and is named once in the log, as the usage report names it.
        self._prices = prices or PriceTable()
        self._cost = Counter("bot_model_cost_usd", "What the model calls cost in USD, from the price table.",
                             ["client", "model"], registry=into)
        self._clients: dict[str, ClientMetrics] = {}

    def client(self, name: str) -> ClientMetrics:
        """The client's children, made on first use (run_services makes every known client's at startup)."""
        found = self._clients.get(name)
        if found is None:
            found = self._clients[name] = ClientMetrics(
                self._ack_seconds.labels(name), self._turns.labels(name),
                self._flagged.labels(name))
        return found

    # The acknowledgement path: one dict lookup and one observation (two increments: the sum and a bucket).
    def acknowledged(self, client: str, seconds: float) -> None:
        (self._clients.get(client) or self.client(client)).ack_seconds.observe(seconds)

    def turn(self, client: str) -> None:
        self.client(client).turns.inc()

    def fallback(self, client: str, reason: str) -> None:
        """`reason`: one of a few fixed words (model_error, empty_reply, turn_failures), never free text."""
        children = self.client(client).fallbacks
        child = children.get(reason)
        if child is None:
            child = children[reason] = self._fallbacks.labels(client, reason)
        child.inc()

    def flagged(self, client: str) -> None:
        self.client(client).flagged.inc()

    def model(self, client: str, model: str) -> ModelMetrics:
        children = self.client(client).models
        found = children.get(model)
        if found is None:
            found = children[model] = ModelMetrics(
                self._model_calls.labels(client, model, "ok"), self._model_calls.labels(client, model, "error"),
                self._model_seconds.labels(client, model), self._tokens.labels(client, model, "prompt"),
                self._tokens.labels(client, model, "completion"), self._cost.labels(client, model))
        return found

    def model_call(self, client: str, model: str, seconds: float, *, ok: bool, prompt_tokens: int = 0,
                   completion_tokens: int = 0) -> None:
        found = self.model(client, model)
        (found.calls_ok if ok else found.calls_failed).inc()
        found.seconds.observe(seconds)
        if prompt_tokens:
            found.prompt_tokens.inc(prompt_tokens)
        if completion_tokens:
            found.completion_tokens.inc(completion_tokens)
        if prompt_tokens or completion_tokens:
            cost = self._prices.cost([(model, prompt_tokens, completion_tokens)]).usd
            if cost:
                found.cost_usd.inc(cost)

    def sent(self, client: str, result: str) -> None:
        """`result`: sent, sandbox or failed."""
        children = self.client(client).sends
        child = children.get(result)
        if child is None:
            child = children[result] = self._sends.labels(client, result)
        child.inc()

    def send_error(self, client: str, code: int | None) -> None:
        """A Graph error on one attempt; `code` None (no answer from Meta) is counted as "network"."""
        label = str(code) if code is not None else "network"
        children = self.client(client).send_errors
        child = children.get(label)
        if child is None:
            child = children[label] = self._send_errors.labels(client, label)
        child.inc()

    def exposition(self, backlog: Iterable[ClientBacklog] | None, clients: Iterable[str], now: datetime) -> bytes:
        """The text format of every process's values (multiprocess mode) or this one's, and the store's gauges
        (0 for a client with nothing waiting; left out when the store could not be read: `backlog` None)."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()  # one per scrape, as prometheus-client's multiprocess docs do
            MultiProcessCollector(registry, path=self.multiprocess_dir)
        else:
            registry = CollectorRegistry()
            registry.register(_Registered(self.registry))
        if backlog is not None:
            rows = {name: ClientBacklog(name) for name in clients}
            rows.update((row.client, row) for row in backlog)
            registry.register(BacklogCollector(list(rows.values()), now))
        return generate_latest(registry)


class _Registered(Collector):
    """This process's registry, collected inside a scrape's registry beside the store's gauges."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        return self._registry.collect()


class BacklogCollector(Collector):
    """Gauges read from the store at scrape time: the same figure whichever process is scraped."""

    def __init__(self, backlog: list[ClientBacklog], now: datetime) -> None:
        self._backlog = backlog
        self._now = now

    def collect(self) -> Iterator[Metric]:
        due = GaugeMetricFamily("bot_conversations_due", "Conversations whose batch is due now and not answered yet.",
                                labels=["client"])
        oldest = GaugeMetricFamily("bot_oldest_due_age_seconds", "How long the longest-waiting due conversation has "
                                   "been due (0 when none is).", labels=["client"])
        attention = GaugeMetricFamily("bot_conversations_needing_attention", "Conversations flagged for a person "
                                      "and not resolved.", labels=["client"])
        effects = GaugeMetricFamily("bot_effects_pending", "Effects (staff emails) in the outbox not carried out yet.",
                                    labels=["client"])
        for row in self._backlog:
            due.add_metric([row.client], row.due)
            age = (self._now - row.oldest_due_at).total_seconds() if row.oldest_due_at is not None else 0.0
            oldest.add_metric([row.client], max(0.0, age))
            attention.add_metric([row.client], row.needing_attention)
            effects.add_metric([row.client], row.effects_pending)
        yield from (due, oldest, attention, effects)
