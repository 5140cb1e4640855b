"""`python -m core chat`: a newcomer talks to a bot without Meta, through the real webhook path and the sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEMO, RunningApp
from tests.fakes.openai import FakeOpenAI, Reply
from tests.processes import FOREIGN_PREFIXES, ROOT, free_port, server_process
from tests.support import signed, text_delivery

SECRET = "chat-test-secret"
QUESTION = "¿Hacen envíos a Palermo?"
# The demo's knowledge (clients/demo/knowledge/envios.md) answers it, offline.
KNOWN_ANSWER = "demo> Hacemos envíos a domicilio con nuestro repartidor a Villa Crespo, Almagro, Palermo"


def fresh_env(**extra: str) -> dict[str, str]:
    """The environment of a newcomer's shell: nothing of this project configured."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith((*FOREIGN_PREFIXES, "SANDBOX_",
                                                                                    "PORT"))}
    return {**clean, **extra}


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """The project's files as a clone has them (no .env, no data/), sharing the test run's installed .venv."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    clone = tmp_path / "clone"
    for name in files:
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)  # keeps modes (scripts) and times (no reinstall)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    return clone


@pytest.fixture
def served(fresh_clone: Path) -> Iterator[tuple[Path, int]]:
    """`./scripts/serve` as the README says, on a free port, in the fresh clone."""
    port = free_port()
    with server_process(["./scripts/serve"], port, fresh_env(PORT=str(port)), fresh_clone / "serve.log",
                        cwd=fresh_clone):
        yield fresh_clone, port


def chat(cwd: Path, stdin: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`.venv/bin/python -m core chat …` typed into as a person would, then Ctrl-D."""
    return subprocess.run([".venv/bin/python", "-m", "core", "chat", *args], cwd=cwd, input=stdin, text=True,
                          capture_output=True, env=fresh_env(**env), timeout=180)


def test_the_readme_quick_start_chat_answers_with_nothing_configured(served: tuple[Path, int]):
    clone, port = served
    result = chat(clone, QUESTION + "\n", "demo", PORT=str(port))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(KNOWN_ANSWER), result.stdout
    assert "sandbox-demo" in result.stderr  # where the chat writes, said once at the start
    # Through the real webhook path: the server stored and "sent" it in the sandbox.
    log = (clone / "serve.log").read_text()
    assert "whatsapp.sandbox_send phone_number_id=sandbox-demo to=15550100001" in log
    assert "POST /webhook HTTP/1.1\" 200" in log


def test_a_chat_without_a_server_says_how_to_start_one(fresh_clone: Path):
    (fresh_clone / "data").mkdir()
    (fresh_clone / "data" / "sandbox_secret").write_text("whatever")
    result = chat(fresh_clone, "hola\n", "demo", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "no server answers at" in result.stderr and "./scripts/serve" in result.stderr


def test_local_chat_with_a_model_shows_tool_calls_tokens_and_a_burst_answered_once(fresh_clone: Path,
                                                                                   llm: FakeOpenAI):
    llm.script(Reply(content="Me fijo el horario.", tool_calls=[("business_hours", {})]), Reply(content="Abrimos a las 9."))
    result = chat(fresh_clone, "hola\n¿a qué hora abren?\n", "demo", "--local", "--verbose",
                  OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=llm.url, DEBOUNCE_SECONDS="1")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("demo>")] == ["demo> Me fijo el horario.", "demo> Abrimos a las 9."]
    assert "  · model, beside its tool calls: Me fijo el horario." in lines
    assert "  · tool call business_hours({})" in lines
    assert any(line.startswith("  · business_hours returned: ") for line in lines)
    assert any("tokens" in line and "after your last message" in line for line in lines)
    # Both lines went in one burst: one answering turn that saw both.
    assert [m["content"] for m in llm.requests[0]["messages"] if m["role"] == "user"] == ["hola", "¿a qué hora abren?"]
    assert len(llm.requests) == 2


class TestTheSandboxNumber:
    @pytest.fixture
    def app(self, start_app) -> RunningApp:
        return start_app({"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id}, sandbox_secret=SECRET)

    def delivery(self, body: str) -> dict:
        return text_delivery("sandbox", "sandbox-demo", "15550100001", body)

    def test_only_deliveries_signed_with_the_sandbox_secret_reach_it(self, start_app):
        app = start_app({"DEMO_PHONE_NUMBER_IDS": DEMO.phone_number_id, "DEMO_APP_SECRET": DEMO.secret},
                        sandbox_secret=SECRET)
        for secret in (None, "another-secret"):
            assert app.post_webhook(self.delivery("hola"), secret).status_code == 401
        response = app.post_webhook(self.delivery("hola"), DEMO.secret)  # the app's real secret: not the sandbox's
        assert response.status_code == 401
        assert "sandbox secret" in response.json()["detail"]
        answer = app.http.get(f"{app.url}/sandbox/demo/conversations/15550100001",
                              headers={"Authorization": f"Bearer {SECRET}"})
        assert answer.json() == {"conversation": None, "messages": []}

        assert app.post_webhook(self.delivery("hola"), SECRET).json() == {"status": "ok", "stored": 1}

    def test_the_sandbox_secret_opens_no_real_number(self, app: RunningApp):
        delivery = text_delivery("1", DEMO.phone_number_id, "5491155550070", "hola")
        assert app.post_webhook(delivery, SECRET).status_code == 401

    def test_reading_back_needs_the_secret(self, app: RunningApp):
        url = f"{app.url}/sandbox/demo"
        assert app.http.get(url).status_code == 401
        assert app.http.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        info = app.http.get(url, headers={"Authorization": f"Bearer {SECRET}"})
        assert info.json() == {"client": "demo", "phone_number_id": "sandbox-demo", "llm": "offline"}
        unknown = app.http.get(f"{app.url}/sandbox/nobody", headers={"Authorization": f"Bearer {SECRET}"})
        assert unknown.status_code == 404 and "demo" in unknown.json()["detail"]

    def test_a_live_client_has_no_sandbox_number(self, start_app):
        app = start_app({**DEMO.env(), "EMPRENDEMY_PHONE_NUMBER_IDS": "2002"}, sandbox_secret=SECRET)
        raw, headers = signed(self.delivery("hola"), SECRET)
        response = app.http.post(app.url + "/webhook", content=raw, headers=headers)
        assert response.json() == {"status": "ok", "stored": 0}  # acknowledged, routed nowhere
        live = app.http.get(f"{app.url}/sandbox/demo", headers={"Authorization": f"Bearer {SECRET}"})
        assert live.status_code == 404 and "DEMO_ACCESS_TOKEN" in live.json()["detail"]


def test_the_secret_a_server_makes_is_shared_by_its_workers_and_private(tmp_path: Path):
    code = ("import sys; from pathlib import Path; from core.config import Settings; "
            "from core.sandbox import sandbox_secret; "
            "print(sandbox_secret(Settings(_env_file=None), Path(sys.argv[1])))")
    file = tmp_path / "data" / "sandbox_secret"
    runs = [subprocess.Popen([sys.executable, "-c", code, str(file)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env=fresh_env()) for _ in range(4)]
    secrets = {run.communicate(timeout=60)[0].strip() for run in runs}
    assert len(secrets) == 1 and len(secrets.pop()) >= 32
    assert file.stat().st_mode & 0o077 == 0
