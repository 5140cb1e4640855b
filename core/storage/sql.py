"""The thin shim that lets the store's SQL be written once: a transaction protocol both databases implement.

Statements use PostgreSQL's numbered placeholders (`$1`, `$2`, a number may repeat); the SQLite adapter turns them
into its own `?1`, `?2`. Arguments are plain Python values: datetimes, ints, strings, booleans, and `Json(value)`
for a JSON column. Each adapter encodes them for its driver and decodes what comes back through its `Dialect`.
"""

from __future__ import annotations

import json

import orjson
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Json:
    """An argument stored in a JSON column (jsonb on Postgres, text on SQLite)."""

    value: Any


class Dialect(Protocol):
    """What differs in the values a database gives back, and the one clause it has and the other lacks."""

    row_lock: str
    """The clause that locks the rows a SELECT reads until commit (empty where the whole database is locked)."""

    claim_lock: str
    """The clause that locks the rows a SELECT reads, skipping those another transaction holds."""

    def time(self, value: Any) -> datetime | None:
        """A timestamp column's value as an aware datetime."""

    def json(self, value: Any) -> Any:
        """A JSON column's value as Python data."""


class Tx(Protocol):
    """One transaction: statements run in order and commit together, or not at all."""

    dialect: Dialect

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it touched."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def serialize_on(self, key: str) -> None:
        """Until commit, take turns with every other transaction that names the same key."""


Body = Callable[[Tx], Awaitable[T]]


class Database(Protocol):
    """Connections, transactions and codecs of one database; the store's SQL runs on it."""

    dialect: Dialect

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, body: Body[T]) -> T:
        """Run `body` with a consistent view and no writes."""

    async def write(self, body: Body[T], *, order: str | None = None) -> T:
        """Run `body` in a write transaction; return once it is committed (its exception rolls it back alone).

        A write given an `order` may share its transaction with other such writes, run in `order`'s order, so
        that groups taking row locks take them in one order and never deadlock each other."""


def json_text(value: Any) -> str:
    """The text a JSON argument is stored as (compact UTF-8)."""
    try:
        # orjson: every acknowledgement stores Meta's message as JSON; ~20x faster than json.dumps.
        return orjson.dumps(value).decode()
    except TypeError:  # what only the standard library writes: lone surrogates, integers past 64 bits, int keys
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_value(text: str | bytes) -> Any:
    """Python data from a JSON column's text."""
    return orjson.loads(text)


def iso(value: datetime | None) -> str | None:
    """A datetime as ISO 8601 text with microseconds (sortable as text when every value is UTC)."""
    return value.isoformat(timespec="microseconds") if value is not None else None
