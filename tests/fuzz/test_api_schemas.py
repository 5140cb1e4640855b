"""Every operation of every client's REST API, fuzzed from the client's own OpenAPI schema: never a 5xx.

The schema is read from the running app (behind the client's key), so an endpoint a client adds is fuzzed too.
Schemathesis's pytest wrapper for schemas built in fixtures (`schemathesis.pytest.from_fixture`) fails on pytest 9.2
(it sets `Function._nodeid`, which pytest no longer has), so each operation's cases are drawn with Hypothesis here.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import example, given, settings, strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.fakes.graph import FakeGraph
from tests.support import text_delivery

# Generated cases per operation (valid, invalid, naming a real conversation), besides the edge cases: about 2 s per
# client and store on an idle 2-core machine.
EXAMPLES_PER_OPERATION = 30
# Where the stores' integers end (SQLite INTEGER, Postgres BIGINT): a number past them raised a 500 before (f015d85).
EDGE_INTEGERS = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30, -1, 0]
# Server errors found and not fixed here (outside what this change may touch): each must still be found, so that
# the entry is removed when the bug is fixed.


@pytest.fixture
def tmp_db(each_store_url: str) -> str:
    """start_app's DATABASE_URL: both stores, which fail differently (SQLite and asyncpg overflow, types)."""
    return each_store_url


@pytest.fixture
def app(start_app: Any, graph: FakeGraph) -> RunningApp:
    """Both clients live with their API keys; the bot does not answer while fuzzing (a long debounce), and operator
    messages to one person are not spaced a second apart (no pacing: it is not what is tested here)."""
    running = start_app({**DEMO.env(), **EMPRENDEMY.env()}, debounce_seconds=600, whatsapp_api_base_url=graph.url,
                        whatsapp_pair_interval_seconds=0)
    for client in (DEMO, EMPRENDEMY):
        for number in range(2):  # conversations of each client, so that some cases name real ones
            delivery = text_delivery(client.waba_id, client.phone_number_id, f"5491100000{number:03d}", "hola")
            response = running.post_webhook(delivery, client.secret)
            assert response.status_code == 200, response.text
    return running


def edge_cases(operation: schemathesis.APIOperation, conversation_id: int) -> list[schemathesis.Case]:
    """One case per integer path or query parameter and edge value, the rest of the request left valid or absent."""
    cases = []
    for parameter in operation.definition.raw.get("parameters", []):
        if parameter["in"] not in ("path", "query") or parameter.get("schema", {}).get("type") != "integer":
            continue
        for value in EDGE_INTEGERS:
            path = {"conversation_id": conversation_id} if "{conversation_id}" in operation.path else {}
            query = {}
            (path if parameter["in"] == "path" else query)[parameter["name"]] = value
            cases.append(operation.Case(path_parameters=path, query=query))
    return cases


def cases_for(operation: schemathesis.APIOperation, conversation_ids: list[int]) -> SearchStrategy[schemathesis.Case]:
    """Valid and invalid cases, and cases naming the client's real conversations."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if "{conversation_id}" in operation.path:
        strategies.append(st.sampled_from(conversation_ids).flatmap(
            lambda known: operation.as_strategy(path_parameters={"conversation_id": known})))
    return st.one_of(strategies)


@pytest.mark.parametrize("client", [DEMO, EMPRENDEMY], ids=lambda client: client.name)
def test_no_operation_answers_a_server_error(app: RunningApp, client: Any, subtests: pytest.Subtests) -> None:
    auth = {"Authorization": f"Bearer {client.api_key}"}
    schema = schemathesis.openapi.from_url(f"{app.url}/api/v1/{client.name}/openapi.json", headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6, [operation.label for operation in operations]
    conversation_ids = [conversation["id"] for conversation in app.api(client, "/conversations").json()]
    for operation in operations:

        # No deadline: each example is a request to a real server and store, whose timing is not the point here.
        @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, database=None, deadline=None)
        @given(case=cases_for(operation, conversation_ids))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=auth, checks=[not_a_server_error])

        for case in edge_cases(operation, conversation_ids[0]):  # explicit examples: tried first, every run
            call = example(case=case)(call)

        with subtests.test(operation=operation.label):
            call()
