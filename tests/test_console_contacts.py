"""A conversation's contact edited from the console in a real browser: operators add and remove tags and write the
note (kept in the store, shown after a reload and on the inbox rows); viewers only read; other clients' staff 404."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DEMO, RunningApp
from tests.console_support import start_console
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.test_console_browser import answered, log_in


@pytest.fixture
def console(start_app: Any, tmp_db: str, graph: FakeGraph, llm: FakeOpenAI) -> RunningApp:
    return start_console(start_app, tmp_db, graph, llm, whatsapp_pair_interval_seconds=0.02)


def rest_contact(app: RunningApp, user_key: str) -> dict[str, Any]:
    """The contact as the REST API reads it (the same store row the console wrote)."""
    [found] = app.http.get(f"{app.url}/api/v1/demo/contacts", params={"q": user_key},
                           headers={"Authorization": f"Bearer {DEMO.api_key}"}).json()
    return found


def test_an_operator_tags_and_notes_the_contact_and_both_stay_after_a_reload(page: Page, console: RunningApp):
    conversation = answered(console, DEMO, "5491100000021", "quiero comprar al por mayor", name="Julia")
    path = f"/console/c/demo/conversations/{conversation}"
    log_in(page, "op@demo.example")
    page.goto(path)
    expect(page.get_by_test_id("contact-no-tags")).to_be_visible()
    # Each button submits a form: the next step waits for the page it brings back (a reload during that navigation
    # fails, or reloads before the note is stored).
    page.get_by_test_id("contact-tag-input").fill("  Mayorista ")
    with page.expect_navigation():
        page.get_by_test_id("contact-tag-add").click()
    page.get_by_test_id("contact-tag-input").fill("vip")
    with page.expect_navigation():
        page.get_by_test_id("contact-tag-add").click()
    page.get_by_test_id("contact-notes").fill("Compra para tres locales.\nLlamar a la mañana.")
    with page.expect_navigation():
        page.get_by_test_id("contact-notes-save").click()
    page.reload()
    expect(page.get_by_test_id("contact-tag")).to_have_text(["mayorista×", "vip×"])
    expect(page.get_by_test_id("contact-notes")).to_have_value("Compra para tres locales.\nLlamar a la mañana.")
    assert rest_contact(console, "5491100000021")["tags"] == ["mayorista", "vip"]
    page.goto("/console/c/demo")
    expect(page.get_by_test_id("conversation-item").get_by_test_id("conversation-tag")).to_have_text(["mayorista", "vip"])
    page.goto(path)
    page.get_by_test_id("contact-tag").filter(has_text="vip").get_by_test_id("contact-tag-remove").click()
    expect(page.get_by_test_id("contact-tag")).to_have_text(["mayorista×"])
    page.get_by_test_id("contact-notes").fill("   ")
    page.get_by_test_id("contact-notes-save").click()
    expect(page.get_by_test_id("contact-notes")).to_have_value("")
    assert rest_contact(console, "5491100000021")["notes"] is None


def test_a_bad_tag_is_refused_with_the_rest_apis_reason(page: Page, console: RunningApp):
    conversation = answered(console, DEMO, "5491100000022", "hola", name="Kevin")
    path = f"/console/c/demo/conversations/{conversation}"
    log_in(page, "op@demo.example")
    csrf = _csrf(page, path)
    refused = page.request.post(f"{path}/contact", form={"csrf": csrf, "edit": "tag-add", "tag": "   "})
    assert refused.status == 422
    assert "a tag cannot be blank" in refused.text()
    refused = page.request.post(f"{path}/contact", form={"csrf": csrf, "edit": "notes", "notes": "x" * 5001})
    assert refused.status == 422 and "notes" in refused.text()
    assert page.request.post(f"{path}/contact", form={"csrf": csrf, "tag": "vip"}).status == 422
    assert page.request.post(f"{path}/contact", form={"csrf": "forged", "edit": "tag-add", "tag": "vip"}).status == 403
    assert rest_contact(console, "5491100000022")["tags"] == [] and rest_contact(console, "5491100000022")["notes"] is None


def test_a_viewer_reads_tags_and_note_but_cannot_change_them(page: Page, console: RunningApp):
    conversation = answered(console, DEMO, "5491100000023", "solo mirar", name="Lola")
    assert console.http.patch(f"{console.url}/api/v1/demo/contacts/5491100000023",
                              json={"tags": ["reclamo"], "notes": "Pidió la factura dos veces."},
                              headers={"Authorization": f"Bearer {DEMO.api_key}"}).status_code == 200
    path = f"/console/c/demo/conversations/{conversation}"
    log_in(page, "viewer@demo.example")
    page.goto(path)
    expect(page.get_by_test_id("contact-tag")).to_have_text(["reclamo"])
    expect(page.get_by_test_id("contact-notes-text")).to_have_text("Pidió la factura dos veces.")
    for testid in ("contact-tag-input", "contact-tag-add", "contact-tag-remove", "contact-notes", "contact-notes-save"):
        expect(page.get_by_test_id(testid)).to_have_count(0)
    csrf = _csrf(page, path)
    for form in ({"edit": "tag-add", "tag": "vip"}, {"edit": "tag-remove", "tag": "reclamo"},
                 {"edit": "notes", "notes": "borrada"}):
        assert page.request.post(f"{path}/contact", form={"csrf": csrf, **form}).status == 403, form
    assert rest_contact(console, "5491100000023")["tags"] == ["reclamo"]
    assert rest_contact(console, "5491100000023")["notes"] == "Pidió la factura dos veces."


def test_another_clients_staff_get_404_for_the_contact_by_url(page: Page, console: RunningApp):
    conversation = answered(console, DEMO, "5491100000024", "hola", name="Mario")
    log_in(page, "op@emprendemy.example")
    expect(page).to_have_url(re.compile(r"/console/c/emprendemy$"))
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    for path in (f"/console/c/demo/conversations/{conversation}/contact",
                 f"/console/c/emprendemy/conversations/{conversation}/contact"):
        refused = page.request.post(path, form={"csrf": csrf, "edit": "tag-add", "tag": "robado"})
        assert refused.status == 404, path
    assert rest_contact(console, "5491100000024")["tags"] == []


def _csrf(page: Page, path: str) -> str:
    page.goto(path)
    return page.locator("input[name=csrf]").first.get_attribute("value") or ""
