"""Routing of webhook entries to clients (ClientRegistry.route) and the X-Hub-Signature-256 check: which client a
delivery belongs to, and which app secret signed it."""

from __future__ import annotations

import pytest

from core.clients import ClientRegistry
from core.errors import ConfigError
from core.webhook.signature import matching_secret, sign
from tests.unit.fakes import make_client

BODY = b'{"object":"whatsapp_business_account","entry":[]}'


@pytest.fixture
def registry() -> ClientRegistry:
    return ClientRegistry([
        make_client("demo", phone_number_ids=["2001", "2011"], waba_ids=["1001"], app_secret="demo-secret"),
        make_client("shop", phone_number_ids=["2002"], waba_ids=["1002"], app_secret="shop-secret"),
        make_client("open", phone_number_ids=["2003"], waba_ids=[]),
    ])


class TestRoute:
    @pytest.mark.parametrize(("waba", "phone", "client"), [("1001", "2001", "demo"), ("1001", "2011", "demo"),
                                                           ("1002", "2002", "shop")])
    def test_a_phone_number_goes_to_its_owner(self, registry: ClientRegistry, waba: str, phone: str,
                                              client: str) -> None:
        route = registry.route(waba, phone)
        assert route.client is not None and route.client.name == client

    def test_a_phone_number_under_another_clients_waba_is_refused(self, registry: ClientRegistry) -> None:
        route = registry.route("1002", "2001")
        assert route.client is None and "demo" in route.reason

    def test_an_unknown_phone_number_is_refused_even_under_a_known_waba(self, registry: ClientRegistry) -> None:
        route = registry.route("1001", "2999")
        assert route.client is None and route.reason == "unknown phone_number_id"

    def test_a_change_without_a_phone_number_routes_by_waba(self, registry: ClientRegistry) -> None:
        route = registry.route("1002", None)
        assert route.client is not None and route.client.name == "shop"

    def test_an_unknown_waba_without_a_phone_number_is_refused(self, registry: ClientRegistry) -> None:
        route = registry.route("1999", None)
        assert route.client is None and route.reason == "unknown WABA id"

    def test_a_client_with_no_waba_ids_is_routed_by_phone_alone(self, registry: ClientRegistry) -> None:
        route = registry.route("1999", "2003")
        assert route.client is not None and route.client.name == "open"

    def test_two_clients_may_not_share_a_phone_number(self) -> None:
        with pytest.raises(ConfigError, match="2001 is already used by client demo"):
            ClientRegistry([make_client("demo", phone_number_ids=["2001"], waba_ids=["1001"]),
                            make_client("shop", phone_number_ids=["2001"], waba_ids=["1002"])])

    def test_two_clients_may_not_share_a_waba(self) -> None:
        with pytest.raises(ConfigError, match="1001 is already used by client demo"):
            ClientRegistry([make_client("demo", phone_number_ids=["2001"], waba_ids=["1001"]),
                            make_client("shop", phone_number_ids=["2002"], waba_ids=["1001"])])


class TestMatchingSecret:
    def test_a_good_signature_names_its_secret(self) -> None:
        assert matching_secret(BODY, sign("demo-secret", BODY), ["shop-secret", "demo-secret"]) == "demo-secret"

    def test_another_clients_secret_is_named_as_that_client(self, registry: ClientRegistry) -> None:
        # The router then checks the named secret is the one of the client each entry routes to.
        assert matching_secret(BODY, sign("shop-secret", BODY), registry.app_secrets()) == "shop-secret"

    def test_an_unknown_secret_matches_nothing(self) -> None:
        assert matching_secret(BODY, sign("attacker", BODY), ["demo-secret"]) is None

    def test_a_body_changed_after_signing_matches_nothing(self) -> None:
        assert matching_secret(BODY + b" ", sign("demo-secret", BODY), ["demo-secret"]) is None

    @pytest.mark.parametrize("header", [None, "", "sha1=" + sign("demo-secret", BODY)[7:], "sha256=", "garbage"])
    def test_a_missing_or_malformed_header_matches_nothing(self, header: str | None) -> None:
        assert matching_secret(BODY, header, ["demo-secret"]) is None

    def test_no_configured_secret_matches_nothing(self) -> None:
        assert matching_secret(BODY, sign("demo-secret", BODY), []) is None

    def test_the_header_is_hex_hmac_sha256_of_the_raw_body(self) -> None:
        # Meta's documented example shape: "sha256=" followed by 64 lower-case hex digits.
        header = sign("secret", b"payload")
        assert header == "sha256=b82fcb791acec57859b989b430a826488ce2e479fdf92326bd0a2e8375a42ba4"
