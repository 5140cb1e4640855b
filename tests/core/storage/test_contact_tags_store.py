"""The tags of a page of people at once (the console's inbox rows), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.storage.base import Store
from core.storage.broadcast_records import ContactChange
from tests.core.storage.test_store import DEBOUNCE, inbound

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


async def test_tags_of_many_people_of_one_client_in_alphabetical_order(store: Store):
    for client, user in (("demo", "5491100000001"), ("demo", "5491100000002"), ("demo", "5491100000003"),
                         ("emprendemy", "5491100000001")):
        await store.record_inbound(client, inbound("hola", user=user, at=T0), DEBOUNCE, T0)
    tag = ContactChange(fields=frozenset({"tags"}))
    await store.update_contact("demo", "5491100000001", ContactChange(fields=tag.fields, tags=["vip", "mayorista"]), T0)
    await store.update_contact("demo", "5491100000002", ContactChange(fields=tag.fields, tags=["reclamo"]), T0)
    await store.update_contact("emprendemy", "5491100000001", ContactChange(fields=tag.fields, tags=["alumno"]), T0)
    keys = ["5491100000001", "5491100000002", "5491100000003", "5491100000001", "nobody"]
    assert await store.tags_of("demo", keys) == {"5491100000001": ["mayorista", "vip"], "5491100000002": ["reclamo"]}
    assert await store.tags_of("emprendemy", keys) == {"5491100000001": ["alumno"]}
    assert await store.tags_of("demo", []) == {}
