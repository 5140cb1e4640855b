"""The console in Spanish (es-AR) and English: from the browser's Accept-Language, or the account's choice (kept in
the store, so it follows the account to another browser); and every text a template shows is in the catalogue."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from core.console import i18n
from core.console.i18n import SPANISH, Translator, negotiate
from tests.conftest import DEMO, RunningApp
from tests.console_support import start_console
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.test_console_browser import answered, log_in

CONSOLE = Path(i18n.__file__).parent
TEMPLATE_TEXT = re.compile(r'''_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')''')


def test_every_text_a_template_names_is_in_the_spanish_catalogue():
    named = {m.group(1) or m.group(2) for page in (CONSOLE / "templates").glob("*.html")
             for m in TEMPLATE_TEXT.finditer(page.read_text(encoding="utf-8"))}
    assert len(named) > 60
    assert sorted(named - set(SPANISH)) == []


def test_every_fixed_refusal_a_page_shows_is_in_the_spanish_catalogue():
    """The reasons routes hand to a page (refuse, _Refused, the login form's errors) as plain strings."""
    said = set()
    for module in CONSOLE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                    "refuse", "_Refused", "again", "_page"):
                said |= {arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                         and " " in arg.value and not arg.value.endswith(".html")}
    assert len(said) > 10
    assert sorted(said - set(SPANISH)) == []


def test_the_language_is_the_accounts_choice_else_the_browsers_most_wanted():
    assert negotiate("es-AR,es;q=0.9,en;q=0.8") == "es"
    assert negotiate("en-US,en;q=0.9,es;q=0.8") == "en"
    assert negotiate("fr-FR,fr;q=0.9,es;q=0.5") == "es"
    assert negotiate("es;q=0.2, en;q=0.9") == "en"
    assert negotiate("de-DE") == "en" and negotiate(None) == "en" and negotiate("es;q=nonsense") == "en"
    assert negotiate("es-AR", chosen="en") == "en" and negotiate("en", chosen="es") == "es"
    assert negotiate("es-AR", chosen="xx") == "es"
    spanish = Translator("es")
    assert spanish("Write to {name}", name="Ana") == "Escribile a Ana"
    assert spanish("a text the catalogue lacks") == "a text the catalogue lacks"
    assert Translator("en")("Write to {name}", name="Ana") == "Write to Ana"


@pytest.fixture
def console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    return start_console(start_app, tmp_db, graph, llm)


def spanish_page(browser: Browser, console: RunningApp) -> Any:
    return browser.new_context(base_url=console.url, locale="es-AR",
                               extra_http_headers={"Accept-Language": "es-AR,es;q=0.9"})


def test_a_spanish_browser_gets_spanish_and_an_accounts_choice_follows_it(browser: Browser, console: RunningApp):
    conversation = answered(console, DEMO, "5491100000040", "hola", name="Ana")
    context = spanish_page(browser, console)
    try:
        page: Page = context.new_page()
        page.goto("/console/login")
        expect(page.locator("html")).to_have_attribute("lang", "es-AR")
        expect(page.get_by_test_id("login-submit")).to_have_text("Ingresar")
        log_in(page, "op@demo.example", "wrong password")
        expect(page.get_by_role("alert")).to_have_text("Email o contraseña incorrectos.")
        log_in(page, "op@demo.example")
        expect(page.get_by_test_id("tab-inbox")).to_have_text("Bandeja")
        expect(page.get_by_test_id("conversation-item")).to_contain_text("esperando a la persona")
        page.goto(f"/console/c/demo/conversations/{conversation}")
        expect(page.get_by_test_id("takeover")).to_have_text("Tomar")
        expect(page.get_by_test_id("window")).to_contain_text("Ventana de 24 h abierta")
        page.get_by_test_id("language-en").click()  # the account chooses English: this page, at once
        expect(page).to_have_url(re.compile(rf"/console/c/demo/conversations/{conversation}$"))
        expect(page.get_by_test_id("takeover")).to_have_text("Take over")
    finally:
        context.close()
    again = spanish_page(browser, console)  # another Spanish browser: the account's choice wins
    try:
        page = again.new_page()
        log_in(page, "op@demo.example")
        expect(page.get_by_test_id("tab-inbox")).to_have_text("Inbox")
        page.get_by_test_id("language-es").click()
        expect(page.get_by_test_id("tab-inbox")).to_have_text("Bandeja")
        page.goto("/console/c/demo/dashboard")
        expect(page.get_by_test_id("bot-state")).to_have_text("encendido")
        if os.environ.get("CONSOLE_SCREENSHOTS_DIR"):  # docs/console-dashboard-es.png, only when asked
            page.screenshot(path=str(Path(os.environ["CONSOLE_SCREENSHOTS_DIR"]) / "console-dashboard-es.png"))
        csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
        assert page.request.post("/console/language", form={"csrf": csrf, "language": "fr"}).status == 422
        assert page.request.post("/console/language", form={"csrf": "forged", "language": "en"}).status == 403
    finally:
        again.close()
