"""The dashboard's counts over stored messages, on both databases (SQLite file and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.storage.base import Store
from tests.core.storage.test_store import DEBOUNCE, answer, inbound

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
FALLBACK = "Perdón, tuve un problema. ¿Podés repetirlo?"


async def test_bot_replies_with_given_texts_are_counted_per_client_and_period(store: Store):
    for minute, (user, reply) in enumerate([("5491100000001", FALLBACK), ("5491100000002", "Abrimos a las 9."),
                                            ("5491100000003", FALLBACK)]):
        at = T0 + timedelta(minutes=minute)
        await store.record_inbound("demo", inbound("hola", user=user, at=at), DEBOUNCE, at)
        await answer(store, at + timedelta(seconds=30), reply_wamid=f"wamid.out.{minute}", text=reply)
    await store.record_inbound("shop", inbound("hola", user="5491100000004", client_phone="3001"), DEBOUNCE, T0)
    await answer(store, T0 + timedelta(seconds=30), reply_wamid="wamid.out.shop", text=FALLBACK)
    day = (T0 - timedelta(hours=12), T0 + timedelta(hours=12))
    assert await store.count_bot_replies("demo", [FALLBACK], *day) == 2
    assert await store.count_bot_replies("demo", [FALLBACK, "Abrimos a las 9."], *day) == 3
    assert await store.count_bot_replies("demo", [FALLBACK], T0 + timedelta(minutes=1), day[1]) == 1
    assert await store.count_bot_replies("demo", [FALLBACK], day[0], T0) == 0
    assert await store.count_bot_replies("shop", [FALLBACK], *day) == 1
    assert await store.count_bot_replies("demo", [], *day) == 0
