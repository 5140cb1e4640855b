"""`python -m core`: knowledge sync and new-client, in process and as the real command."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.cli import main
from core.clients import build_client, discover
from core.config import Settings
from tests.core.knowledge.fakes import FakeEmbeddings, FakePinecone
from tests.fakes.server import serve

ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE_VARIABLES = ("PINECONE_", "EMBEDDING_", "KNOWLEDGE_", "OPENAI_", "CLIENTS_PACKAGE")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No knowledge variables from the developer's shell, and no .env: the commands read the cwd's."""
    for name in list(os.environ):
        if name.startswith(KNOWLEDGE_VARIABLES):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty clients package, importable under a unique name."""
    name = f"tenants_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text('"""Test clients."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield folder
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


@pytest.fixture
def acme(package: Path) -> Path:
    """Client `acme` in the package, with two knowledge files."""
    client = package / "acme"
    (client / "knowledge").mkdir(parents=True)
    (client / "__init__.py").write_text("")
    (client / "knowledge" / "horarios.md").write_text(
        "# Horarios\nDe lunes a viernes de 9 a 18.\n\n# Dirección\nAv. Corrientes 1234.\n", encoding="utf-8")
    (client / "knowledge" / "envios.md").write_text("# Envíos\nA todo el país.\n", encoding="utf-8")
    return client


class TestNewClient:
    def test_creates_a_client_that_discover_loads(self, package: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch):
        assert main(["new-client", "la_tienda", "--clients-dir", str(package)]) == 0
        created = package / "la_tienda"
        assert (created / "__init__.py").is_file() and (created / "prompts.py").is_file()
        for path in created.rglob("*.py"):
            assert "__CLIENT__" not in path.read_text()
        [spec] = discover(package.name)
        assert spec.name == "la_tienda"
        assert "la_tienda" in spec.instructions.system_prompt()
        monkeypatch.setenv("LA_TIENDA_PHONE_NUMBER_IDS", "3001")
        client = build_client(spec, Settings(_env_file=None), None)  # type: ignore[call-arg]
        assert client.settings.phone_number_ids == ["3001"]
        assert client.send_mode == "sandbox"

    def test_prints_the_variables_to_set_and_the_webhook_url(self, package: Path, capsys: pytest.CaptureFixture[str]):
        main(["new-client", "acme", "--clients-dir", str(package)])
        out = capsys.readouterr().out
        for variable in ("PHONE_NUMBER_IDS", "WABA_IDS", "ACCESS_TOKEN", "APP_SECRET", "VERIFY_TOKEN", "API_KEY"):
            assert f"ACME_{variable}" in out
        assert "https://<your-host>/webhook" in out
        assert "python -m core knowledge sync acme" in out

    @pytest.mark.parametrize(("name", "reason"), [
        ("Acme", "lower-case Python identifier"),
        ("1acme", "lower-case Python identifier"),
        ("_acme", "lower-case Python identifier"),
        ("acme-shop", "lower-case Python identifier"),
        ("ácme", "lower-case Python identifier"),
        ("class", "Python keyword"),
        ("openai", "OPENAI_API_KEY"),  # <NAME>_API_KEY would be the OpenAI key
        ("pinecone", "PINECONE_API_KEY"),
        ("taken", "is taken"),
    ])
    def test_bad_names_exit_2_with_a_message_and_create_nothing(self, package: Path, name: str, reason: str,
                                                                capsys: pytest.CaptureFixture[str]):
        (package / "taken").mkdir()
        before = sorted(p.name for p in package.iterdir())
        assert main(["new-client", name, "--clients-dir", str(package)]) == 2
        assert reason in capsys.readouterr().err
        assert sorted(p.name for p in package.iterdir()) == before

    def test_a_missing_clients_folder_exits_2(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
        assert main(["new-client", "acme", "--clients-dir", str(tmp_path / "nowhere")]) == 2
        assert "no folder" in capsys.readouterr().err


class TestKnowledgeSync:
    def test_builds_the_local_index_and_says_what_it_did(self, acme: Path, capsys: pytest.CaptureFixture[str]):
        assert main(["knowledge", "sync", "acme", "--clients-dir", str(acme.parent)]) == 0
        out = capsys.readouterr().out
        assert "Synced knowledge of acme with the lexical backend: 3 passage(s) from 2 file(s)." in out
        assert "envios.md: 1 passage(s)" in out and "horarios.md: 2 passage(s)" in out

    def test_an_unknown_client_exits_2(self, acme: Path, capsys: pytest.CaptureFixture[str]):
        assert main(["knowledge", "sync", "nobody", "--clients-dir", str(acme.parent)]) == 2
        err = capsys.readouterr().err
        assert "unknown client 'nobody'" in err and "clients: acme" in err

    def test_a_client_without_a_knowledge_folder_exits_2(self, package: Path, capsys: pytest.CaptureFixture[str]):
        (package / "bare").mkdir()
        (package / "bare" / "__init__.py").write_text("")
        assert main(["knowledge", "sync", "bare", "--clients-dir", str(package)]) == 2
        assert "has no knowledge folder" in capsys.readouterr().err

    def test_a_half_configured_pinecone_exits_2(self, acme: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]):
        monkeypatch.setenv("PINECONE_API_KEY", "pc-test")
        assert main(["knowledge", "sync", "acme", "--clients-dir", str(acme.parent)]) == 2
        assert "PINECONE_INDEX_HOST" in capsys.readouterr().err

    def test_missing_arguments_exit_2(self, capsys: pytest.CaptureFixture[str]):
        assert main(["knowledge", "sync"]) == 2
        assert main([]) == 2


def test_the_real_command_syncs_to_pinecone(acme: Path, tmp_path: Path):
    """`python -m core knowledge sync` in its own process, configured by environment, against the stand-ins."""
    pinecone, embeddings = FakePinecone(), FakeEmbeddings()
    with serve(pinecone.app) as pinecone_url, serve(embeddings.app) as openai_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(KNOWLEDGE_VARIABLES)}
        env.update(PINECONE_API_KEY=pinecone.api_key, PINECONE_INDEX_HOST=pinecone_url,
                   OPENAI_API_KEY=embeddings.api_key, OPENAI_BASE_URL=openai_url + "/v1", PYTHONPATH=str(ROOT))
        command = [sys.executable, "-m", "core", "knowledge", "sync", "acme", "--clients-dir", str(acme.parent)]
        result = subprocess.run(command, cwd=tmp_path / "cwd", env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "with the pinecone backend: 3 passage(s) from 2 file(s)" in result.stdout
    assert set(pinecone.namespaces["acme"]) == {"envios:envios:1", "horarios:horarios:1", "horarios:direccion:1"}
    assert pinecone.errors == []
