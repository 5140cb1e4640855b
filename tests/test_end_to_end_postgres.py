"""The foundation's end-to-end scenarios, unchanged, with the app's data in PostgreSQL instead of SQLite."""

from __future__ import annotations

import asyncpg
import pytest

import tests.test_end_to_end as scenarios
from tests.conftest import DEMO, RunningApp
from tests.fakes.graph import FakeGraph
from tests.postgres import run_async
from tests.support import text_delivery, wait_for

# Every scenario of tests/test_end_to_end.py, collected here again: this module's tmp_db gives them Postgres.
globals().update({name: test for name, test in vars(scenarios).items() if name.startswith("test_")})


@pytest.fixture
def tmp_db(postgres_url: str) -> str:
    """start_app's DATABASE_URL: a fresh migrated database on the tests' PostgreSQL server."""
    return postgres_url


def test_the_conversation_is_in_postgres(live_app: RunningApp, graph: FakeGraph, postgres_url: str):
    assert live_app.settings.database_url == postgres_url
    live_app.post_webhook(text_delivery(DEMO.waba_id, DEMO.phone_number_id, "5491155550042", "hola"), DEMO.secret)
    wait_for(graph.texts, what="a reply")

    async def rows() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(postgres_url)
        try:
            return [tuple(row) for row in await conn.fetch(
                "SELECT c.user_key, m.direction, m.text FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                "WHERE m.direction <> 'internal' ORDER BY m.id")]
        finally:
            await conn.close()

    wait_for(lambda: len(run_async(rows())) == 2, what="the reply to be stored")
    assert run_async(rows()) == [("5491155550042", "in", "hola"), ("5491155550042", "out", "echo: hola")]
