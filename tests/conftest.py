"""Fixtures for the real pieces: stand-in servers on 127.0.0.1 and the app itself served by uvicorn."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from core.app import create_app
from core.clock import Clock, SystemClock
from core.config import Settings
from core.storage.base import Store
from core.storage.postgres import PostgresStore
from core.storage.sqlite import SQLiteStore
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import serve
from tests.postgres import PostgresServer, PostgresUnavailable
from tests.support import signed

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# Variables the tests own; anything a developer exported is removed so each test starts from a clean slate.
OWNED_PREFIXES = ("DEMO_", "EMPRENDEMY_", "META_", "OPENAI_", "WHATSAPP_", "DATABASE_URL", "DEBOUNCE_", "LEASE_",
                  "SCHEDULER_", "HISTORY_", "MAX_TOOL_", "WEBHOOK_", "LOG_LEVEL", "CLIENTS_PACKAGE", "MEDIA_",
                  "SUPABASE_", "PINECONE_", "RUN_SCHEDULER", "SANDBOX_", "MODEL_PRICES", "TEMPLATE_")


@dataclass(frozen=True)
class TestClientIds:
    name: str
    waba_id: str
    phone_number_id: str
    token: str
    secret: str
    api_key: str

    def env(self) -> dict[str, str]:
        prefix = self.name.upper() + "_"
        return {prefix + "WABA_IDS": self.waba_id, prefix + "PHONE_NUMBER_IDS": self.phone_number_id,
                prefix + "ACCESS_TOKEN": self.token, prefix + "APP_SECRET": self.secret, prefix + "API_KEY": self.api_key}


DEMO = TestClientIds("demo", "1001", "2001", "demo-token", "demo-secret", "demo-key")
EMPRENDEMY = TestClientIds("emprendemy", "1002", "2002", "emp-token", "emp-secret", "emp-key")


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (pytest.mark.anyio) run on asyncio, as the service does."""
    return "asyncio"


@pytest.fixture
def empty_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database on the tests' PostgreSQL server, with no schema (for migration tests)."""
    url = postgres_server.create_database(migrated=False)
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(OWNED_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph()
    with serve(fake.app) as url:
        fake.url = url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    with serve(fake.app) as url:
        fake.url = url + "/v1"  # type: ignore[attr-defined]
        yield fake


@dataclass
class RunningApp:
    url: str
    http: httpx.Client
    settings: Settings
    clock: Clock

    def post_webhook(self, body: dict[str, Any] | bytes, secret: str | None) -> httpx.Response:
        raw, headers = signed(body, secret)
        return self.http.post(self.url + "/webhook", content=raw, headers=headers)

    def api(self, client: TestClientIds, path: str, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or client.api_key}"}
        return self.http.get(f"{self.url}/api/v1/{client.name}{path}", headers=headers)

    def conversation(self, client: TestClientIds, user_key: str) -> dict[str, Any] | None:
        """The person's conversation with the client, read through the client's REST API."""
        found = [c for c in self.api(client, "/conversations?limit=500").json() if c["user_key"] == user_key]
        return found[0] if found else None

    def messages(self, client: TestClientIds, user_key: str) -> list[dict[str, Any]]:
        conversation = self.conversation(client, user_key)
        return self.api(client, f"/conversations/{conversation['id']}/messages").json() if conversation else []

    def settled(self, client: TestClientIds, user_key: str) -> bool:
        """Nothing due, every inbound message handled, and no outbound message still pending."""
        conversation = self.conversation(client, user_key)
        if conversation is None or conversation["due_at"] is not None:
            return False
        messages = self.messages(client, user_key)
        return all(m["processed_at"] for m in messages if m["direction"] == "in") and \
            all(m["status"] != "pending" for m in messages if m["direction"] == "out")


@pytest.fixture
def tmp_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def each_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A DATABASE_URL on each store in turn; a module whose `tmp_db` returns it runs its apps on both."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'app.db'}"


StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes (unopened) stores on one database of the test's own: a SQLite file, or a fresh Postgres database."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "store.db")
    url = request.getfixturevalue("postgres_url")
    return lambda: PostgresStore(url)


@pytest.fixture
async def store(new_store: StoreFactory) -> AsyncIterator[Store]:
    """An open store of the test's own, on each database in turn."""
    opened = new_store()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test process (each xdist worker has its own), started on first use."""
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as error:
        problem = str(error)
    else:
        yield server
        server.stop()
        return
    pytest.fail(problem, pytrace=False)  # outside the except: the message alone, not a chain of tracebacks


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database of its own for one test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def start_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_db: str, graph: FakeGraph,
              llm: FakeOpenAI) -> Iterator[Any]:
    """Start the real app under uvicorn with the given client env and settings; stopped at test end.

    It depends on the stand-ins so that they outlive the app: a turn still running at shutdown finishes
    against them instead of retrying against closed ports."""
    stack: list[Any] = []

    def start(env: dict[str, str] | None = None, *, clock: Clock | None = None, **overrides: Any) -> RunningApp:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        options = {"database_url": tmp_db, "debounce_seconds": 0.3, "scheduler_poll_seconds": 0.5,
                   "media_archive_dir": tmp_path / "media", "sandbox_secret": "sandbox-secret", **overrides}
        settings = Settings(_env_file=None, **options)
        clock = clock or SystemClock()
        app = create_app(settings, env_file=None, clock=clock)
        server = serve(app)
        url = server.__enter__()
        stack.append(server)
        http = httpx.Client(timeout=10)
        stack.append(http)
        return RunningApp(url, http, settings, clock)

    yield start
    for item in reversed(stack):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


@pytest.fixture
def live_app(start_app: Any, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    """Both clients live against the stand-in Graph API, answering with the stand-in OpenAI."""
    return start_app({**DEMO.env(), **EMPRENDEMY.env()}, openai_api_key="sk-test", openai_base_url=llm.url,
                     whatsapp_api_base_url=graph.url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium for a console module's tests (not longer: see tests/console_support.chromium)."""
    from tests.console_support import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, console: RunningApp) -> Iterator[Page]:
    """A fresh browser context (no cookies) per test on the module's `console` app."""
    from tests.console_support import fresh_page

    with fresh_page(browser, console.url) as opened:
        yield opened
