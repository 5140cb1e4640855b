"""Validly signed, Hypothesis-made webhook deliveries: never a 5xx, and every message acknowledged as stored is there.

Deliveries are Meta-shaped and built from the recorded ones in tests/data/webhooks, then bent: unknown, missing and
wrongly typed fields, odd unicode (lone surrogates, NUL, RTL marks, emoji), huge and negative numbers, deep nesting,
repeated wamids, and the other client's ids. What was stored is read back through each client's REST API.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings, strategies as st

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.fakes.openai import FakeOpenAI
from tests.support import WEBHOOK_DATA, load_delivery

# The webhook's answers by design (core/webhook/router.py): stored, malformed, badly signed, too large.
DESIGNED = {200, 400, 401, 413}
CLIENTS = {client.name: client for client in (DEMO, EMPRENDEMY)}
# Generated deliveries per store, besides FOUND: about 8 s each on an idle 2-core machine.
EXAMPLES = 400

ODD_CHARACTERS = ["\ud800", "\udfff", "\udbff\udc00", "\x00", "\u202e", "\u200f", "\u2066", "\ufeff", "\uffff",
                  "👍", "🏳️‍🌈", "👩🏽‍💻", "\u0301", "ﷺ", "\U0010ffff", "\\", '"', "\n"]
# What the webhook keeps as U+FFFD (core/webhook/router.py): NUL, and a surrogate left alone once json pairs the rest.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Timestamps and counts far out of range: Python's datetime refuses some as ValueError, some as OverflowError, and
# some (beyond about 7e16 seconds) as OSError.
EDGE_INTEGERS = [0, -1, 2**31, 10**17, -(10**17), 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**30]


def recorded_parts() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """Every recorded message, status and non-`messages` change, with DEMO's ids filled in."""
    messages, statuses, others = [], [], []
    for path in sorted(WEBHOOK_DATA.glob("*.json")):
        for entry in load_delivery(path.name, DEMO.waba_id, DEMO.phone_number_id)["entry"]:
            for change in entry["changes"]:
                if change["field"] != "messages":
                    others.append((change["field"], change["value"]))
                    continue
                messages.extend(change["value"].get("messages", []))
                statuses.extend(change["value"].get("statuses", []))
    return messages, statuses, others


MESSAGES, STATUSES, OTHER_CHANGES = recorded_parts()


@dataclass(frozen=True)
class Raw:
    """JSON text written into the body as it is: what json.dumps cannot write (1e999, nesting deeper than it and
    Hypothesis's printing of an example recurse), shown by its label."""

    label: str
    text: str = dataclasses.field(repr=False)


def nested(depth: int, opener: str) -> Raw:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return Raw(f"{opener}...{depth} levels", opener * depth + "0" + closer * depth)


# A message's fields sit 8 levels deep in a delivery; what is nested past 32 levels is stored as a marker
# (core/webhook/events.py), and past about 1000 levels Python's json cannot read the body (a 400).
deeply_nested = st.builds(nested, st.sampled_from([20, 56, 57, 300, 5000]), st.sampled_from(["[", '{"a":']))
odd_text = st.lists(st.one_of(st.characters(), st.sampled_from(ODD_CHARACTERS)), max_size=12).map("".join)
integers = st.one_of(st.integers(), st.sampled_from(EDGE_INTEGERS))


@st.composite
def numbers(draw: st.DrawFn) -> Any:
    """Integers (some far out of range) and finite floats; one in 20 a number JSON has no room for, which makes the
    delivery a 400: NaN or Infinity (json.dumps writes them, Python reads them), or 1e999 (Python reads inf)."""
    if draw(st.integers(0, 19)) == 19:
        return draw(st.sampled_from([float("nan"), float("inf"), Raw("1e999", "1e999")]))
    return draw(st.one_of(integers, st.floats(allow_nan=False, allow_infinity=False)))


leaves = st.one_of(st.none(), st.booleans(), numbers(), odd_text)
json_values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(odd_text, inner, max_size=3)),
                           max_leaves=8)


def body_of(document: Any) -> bytes:
    """The delivery as JSON, each Raw value written out."""
    raw: dict[str, Raw] = {}

    def placeholder(value: Any) -> str:
        assert isinstance(value, Raw)
        raw[f"@raw{len(raw)}@"] = value
        return f"@raw{len(raw) - 1}@"

    text = json.dumps(document, default=placeholder)
    for token, value in raw.items():
        text = text.replace(json.dumps(token), value.text, 1)
    return text.encode()


# A new wamid each time one is drawn (also when Hypothesis replays an example), or one of a small pool, which
# repeats within a delivery and across deliveries (a redelivery must be a no-op).
_fresh = itertools.count()
wamids = st.one_of(st.builds(lambda: f"wamid.FRESH{next(_fresh):06d}"),
                   st.builds(lambda n: f"wamid.FUZZ{n:02d}", st.integers(0, 20)))
senders = st.sampled_from(["5491155550001", "5491155550002", "AR.13491208655302741918"])


def spots(node: Any) -> list[tuple[Any, Any]]:
    """Every (object or array, key or index) in node, at any depth."""
    every: list[tuple[Any, Any]] = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        every.append((node, key))
        every.extend(spots(child))
    return every


@st.composite
def bent(draw: st.DrawFn, node: Any) -> Any:
    """A copy of node with one to three spots changed: a value retyped, replaced by odd text or, when it is a number
    as text (a timestamp, an id), by one out of any sensible range; a field dropped, or one added beside it."""
    node = copy.deepcopy(node)
    for _ in range(draw(st.integers(1, 3))):
        places = spots(node)
        if not places:
            break
        parent, key = draw(st.sampled_from(places))
        action = draw(st.integers(0, 3))
        if action == 0:
            parent[key] = draw(json_values)
        elif action == 1:
            parent[key] = str(draw(integers)) if str(parent[key]).isdigit() else draw(odd_text)
        elif action == 2 and isinstance(parent, dict):
            del parent[key]
        else:
            target = parent if isinstance(parent, dict) else parent[key]
            if isinstance(target, dict):
                target[draw(odd_text)] = draw(json_values)
    return node


@st.composite
def message(draw: st.DrawFn) -> dict[str, Any]:
    recorded = dict(draw(st.sampled_from(MESSAGES)))
    recorded["id"] = draw(wamids)
    if "from" in recorded:
        recorded["from"] = draw(senders)
    if draw(st.integers(0, 29)) == 29:
        recorded[draw(st.sampled_from(sorted(recorded)))] = draw(deeply_nested)
    return draw(bent(recorded)) if draw(st.booleans()) else recorded


@st.composite
def status(draw: st.DrawFn) -> dict[str, Any]:
    recorded = dict(draw(st.sampled_from(STATUSES)))
    recorded["id"] = draw(wamids)
    return draw(bent(recorded)) if draw(st.booleans()) else recorded


@st.composite
def change(draw: st.DrawFn, phone_number_id: str) -> dict[str, Any]:
    if draw(st.integers(0, 5)) == 5:
        name, value = draw(st.sampled_from(OTHER_CHANGES))
        return {"field": name, "value": draw(bent(value))}
    sender = draw(senders)
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "5491100000000", "phone_number_id": phone_number_id},
        "contacts": [{"profile": {"name": draw(odd_text)}, "wa_id": sender}],
        "messages": draw(st.lists(message(), min_size=1, max_size=4)),
    }
    if draw(st.booleans()):
        value["statuses"] = draw(st.lists(status(), max_size=2))
    if draw(st.integers(0, 3)) == 3:
        value = draw(bent(value))
    return {"field": "messages", "value": value}


@st.composite
def delivery(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A delivery and the name of the client whose app secret signs it."""
    signer = draw(st.sampled_from(sorted(CLIENTS)))
    own = CLIENTS[signer]
    tenants = [own] * 5 + [DEMO, EMPRENDEMY]  # mostly the signer's own ids, sometimes the other client's (a 401)
    entries = []
    for _ in range(draw(st.integers(1, 3))):
        tenant = draw(st.sampled_from(tenants))
        waba_id = draw(st.sampled_from([tenant.waba_id] * 6 + ["999999", ""]))
        phone_number_id = draw(st.sampled_from([tenant.phone_number_id] * 6 + [own.phone_number_id, "sandbox-demo"]))
        entries.append({"id": waba_id, "changes": draw(st.lists(change(phone_number_id), min_size=1, max_size=2))})
    document: Any = {"object": "whatsapp_business_account", "entry": entries}
    if draw(st.integers(0, 9)) == 9:
        document = draw(bent(document))
    return document, signer


def found(*messages: dict[str, Any], name: Any = "Ana") -> tuple[dict[str, Any], str]:
    """A delivery of these messages to DEMO's number, signed by DEMO."""
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "5491100000000", "phone_number_id": DEMO.phone_number_id},
             "contacts": [{"profile": {"name": name}, "wa_id": "5491155550001"}], "messages": list(messages)}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": DEMO.waba_id, "changes": [{"field": "messages", "value": value}]}]}, DEMO.name


def recorded_message(kind: str, wamid: str, **fields: Any) -> dict[str, Any]:
    return {**next(message for message in MESSAGES if message["type"] == kind), "id": wamid, **fields}


# Deliveries this fuzzing found a 5xx or an unreadable message with, before the fixes in core/webhook: tried first,
# on every run, whatever the generated examples happen to be.
FOUND = [
    found(recorded_message("contacts", "wamid.FOUND01", contacts=[{"name": 7, "phones": [None, "+54 11"]}])),
    found(recorded_message("text", "wamid.FOUND02", timestamp=str(-(2**63)))),  # OSError in datetime
    found(recorded_message("text", "wamid.FOUND03", text={"body": "a\ud800b"}), name="\udfff"),
    found(recorded_message("text", "wamid.FOUND04\x00", type="te\x00xt", **{"from": "549\x00"})),  # Postgres
    found(recorded_message("text", "wamid.FOUND05", extra=float("nan"))),
    found(recorded_message("text", "wamid.FOUND06", extra=Raw("1e999", "1e999"))),  # Postgres: jsonb has no inf
    found(recorded_message("text", "wamid.FOUND07", extra=nested(56, "["))),
    found(recorded_message("text", "wamid.FOUND08", extra=nested(57, '{"a":'))),
    found(recorded_message("text", "wamid.FOUND09", extra=nested(300, "["))),
]


class Inbound:
    """The wamids of inbound messages each client's REST API lists; a conversation's messages are read again only
    when its `updated_at` moved (every stored message moves it), so each check costs a few requests."""

    def __init__(self, app: RunningApp) -> None:
        self.app = app
        self.seen: dict[tuple[str, int], tuple[str, set[str]]] = {}

    def wamids(self) -> dict[str, set[str]]:
        listed: dict[str, set[str]] = {}
        for name, client in CLIENTS.items():
            listed[name] = set()
            for conversation in pages(lambda offset: self.app.api(client, f"/conversations?limit=500&offset={offset}")):
                key = (name, conversation["id"])
                if key not in self.seen or self.seen[key][0] != conversation["updated_at"]:
                    path = f"/conversations/{conversation['id']}/messages?limit=500&offset="
                    self.seen[key] = (conversation["updated_at"], {
                        m["wamid"] for m in pages(lambda offset: self.app.api(client, f"{path}{offset}"))
                        if m["direction"] == "in"})
                listed[name] |= self.seen[key][1]
        return listed


def pages(get: Callable[[int], Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        response = get(len(items))
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page)
        if len(page) < 500:
            return items


def addressed_to(document: Any) -> dict[str, set[str]]:
    """wamid -> the clients each message object of that wamid was sent to: by its phone number id, or by the
    entry's WABA id when it names no phone number (as core/clients.py routes)."""
    owners: dict[str, set[str]] = {}
    for entry in field(document, "entry", list):
        for change in field(entry, "changes", list):
            value = field(change, "value", dict)
            phone = field(field(value, "metadata", dict), "phone_number_id", str)
            for item in field(value, "messages", list):
                if wamid := field(item, "id", str):
                    owners.setdefault(as_decoded(wamid), set()).update(
                        name for name, client in CLIENTS.items()
                        if phone == client.phone_number_id or (not phone and entry.get("id") == client.waba_id))
    return owners


def as_decoded(text: str) -> str:
    """The string as the server keeps it: escaped surrogate pairs joined, NUL and lone surrogates as U+FFFD."""
    return UNSTORABLE.sub("\ufffd", json.loads(json.dumps(text)))


def field(node: Any, name: str, kind: type) -> Any:
    """node[name] when node is an object and the field is of that kind, else an empty one."""
    value = node.get(name) if isinstance(node, dict) else None
    return value if isinstance(value, kind) else kind()


@pytest.fixture
def tmp_db(each_store_url: str) -> str:
    """start_app's DATABASE_URL: both stores, which refuse different things (NUL, surrogates, big numbers)."""
    return each_store_url


@pytest.fixture
def app(start_app: Any, graph: FakeGraph, llm: FakeOpenAI) -> Iterator[RunningApp]:
    """Both clients live; the bot does not answer while fuzzing (a debounce longer than the test)."""
    running = start_app({**DEMO.env(), **EMPRENDEMY.env()}, debounce_seconds=600, openai_api_key="sk-test",
                        openai_base_url=llm.url, whatsapp_api_base_url=graph.url)
    # A connection per request: on a kept-alive one each answer of the test server comes ~40 ms late.
    with httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        yield dataclasses.replace(running, http=http)


def test_no_delivery_gets_a_server_error_or_loses_what_it_acknowledged(app: RunningApp) -> None:
    inbound = Inbound(app)
    known = inbound.wamids()

    # No deadline: each example is a request to a real server and store, whose timing is not the point here.
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None)
    @given(delivery())
    def deliver(made: tuple[dict[str, Any], str]) -> None:
        nonlocal known
        document, signer = made
        response = app.post_webhook(body_of(document), CLIENTS[signer].secret)
        now = inbound.wamids()  # first: what a failed delivery stored is not put down to the next one
        new = {name: now[name] - known[name] for name in CLIENTS}
        known = now
        assert response.status_code in DESIGNED, response.text
        stored = response.json().get("stored", 0) if response.status_code == 200 else 0
        assert sum(len(wamids) for wamids in new.values()) == stored, (response.json(), new)
        owners = addressed_to(document)
        for name, wamids in new.items():
            for wamid in wamids:  # stored only for the client it was sent to
                assert name in owners.get(wamid, set()), (name, wamid, owners.get(wamid))

    for made in FOUND:
        deliver = example(made)(deliver)
    deliver()
