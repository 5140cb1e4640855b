"""`python -m core new-client` makes a client that answers a signed webhook end to end, with no change to core."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients.helpers import settled, system_prompt, tool_names, tool_results
from tests.conftest import TestClientIds as ClientIds  # aliased: pytest would collect a Test* name
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI, Reply
from tests.support import text_delivery, wait_for

ROOT = Path(__file__).resolve().parents[2]
TIENDA = ClientIds("la_tienda", "1003", "2003", "tienda-token", "tienda-secret", "tienda-key")


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty clients package, importable under a unique name, forgotten by the import system afterwards."""
    name = f"tenants_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text('"""Client folders of this test."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield folder
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def test_a_new_client_answers_a_webhook_end_to_end(package: Path, start_app: Any, graph: FakeGraph, llm: FakeOpenAI):
    done = subprocess.run([sys.executable, "-m", "core", "new-client", TIENDA.name, "--clients-dir", str(package)],
                          check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"Created client la_tienda in {package / 'la_tienda'}" in done.stdout
    for variable in ("LA_TIENDA_PHONE_NUMBER_IDS", "LA_TIENDA_WABA_IDS", "LA_TIENDA_ACCESS_TOKEN", "LA_TIENDA_API_KEY"):
        assert variable in done.stdout
    assert "https://<your-host>/webhook" in done.stdout
    created = package / "la_tienda"
    assert sorted(p.relative_to(created).as_posix() for p in created.rglob("*") if p.is_file()) == [
        "__init__.py", "knowledge/about.md", "prompts.py"]
    assert f"from {package.name}.la_tienda import prompts" in (created / "__init__.py").read_text()

    app = start_app(TIENDA.env(), clients_package=package.name, openai_api_key="sk-test", openai_base_url=llm.url,
                    whatsapp_api_base_url=graph.url)
    assert app.api(TIENDA, "/health").json()["send_mode"] == "live"

    llm.script(Reply(tool_calls=[("search_knowledge", {"query": "opening hours"})]),
               Reply(content="We are open Monday to Friday from 9 am to 6 pm."))
    delivery = text_delivery(TIENDA.waba_id, TIENDA.phone_number_id, "5491180000001", "When are you open?")
    assert app.post_webhook(delivery, TIENDA.secret).json()["stored"] == 1

    [reply] = wait_for(graph.texts, what="the reply")
    assert (reply.phone_number_id, reply.token, reply.body["to"]) == ("2003", "tienda-token", "5491180000001")
    assert reply.text == "We are open Monday to Friday from 9 am to 6 pm."
    assert "You are the WhatsApp assistant of la_tienda." in system_prompt(llm, 0)
    assert "__CLIENT__" not in system_prompt(llm, 0)
    assert tool_names(llm.requests[0]) == {"search_knowledge", "hand_over_to_person"}
    # The template's example knowledge file, copied with the client, is what the search found.
    [passages] = tool_results(llm.requests[1])
    assert passages.startswith("[1] About la_tienda > Opening hours (about.md)\n")
    assert "Example: we are open Monday to Friday from 9 am to 6 pm." in passages

    found = wait_for(lambda: settled(app, TIENDA, "5491180000001"), what="the conversation to settle")
    assert found["contact_name"] == "Ana"
    bad = app.post_webhook(delivery, "not-the-secret")
    assert bad.status_code == 401
