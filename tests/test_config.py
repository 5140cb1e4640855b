"""Configuration: bad values stop startup with a ConfigError naming the variable; blank values mean unset."""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.app import create_app
from core.clients import build_client, discover, load_registry
from core.config import Settings, load_settings
from core.errors import ConfigError
from tests.conftest import DEMO, EMPRENDEMY, RunningApp
from tests.support import text_delivery

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def env_example() -> dict[str, str]:
    """Every NAME=value line of .env.example, blank values kept blank."""
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def set_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def build(tmp_path: Path, **overrides: Any):
    """create_app the way the start_app fixture does, without serving it."""
    return create_app(Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'app.db'}", **overrides), env_file=None)


def config_error(tmp_path: Path, **overrides: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        build(tmp_path, **overrides)
    return str(raised.value)


class TestClientVariables:
    @pytest.mark.parametrize("value", ["abc", "2001,abc", "+5491100000000", "20 01"])
    def test_non_numeric_phone_id_names_the_variable(self, monkeypatch, tmp_path, value: str):
        set_env(monkeypatch, DEMO_PHONE_NUMBER_IDS=value)
        assert "DEMO_PHONE_NUMBER_IDS" in config_error(tmp_path)

    def test_non_numeric_waba_id_names_the_variable(self, monkeypatch, tmp_path):
        set_env(monkeypatch, EMPRENDEMY_WABA_IDS="waba-1")
        assert "EMPRENDEMY_WABA_IDS" in config_error(tmp_path)

    def test_phone_id_of_two_clients_names_the_second_clients_variable(self, monkeypatch, tmp_path):
        set_env(monkeypatch, DEMO_PHONE_NUMBER_IDS="2001", EMPRENDEMY_PHONE_NUMBER_IDS="2003, 2001")
        message = config_error(tmp_path)
        assert "EMPRENDEMY_PHONE_NUMBER_IDS" in message
        assert "2001" in message
        assert "demo" in message

    def test_waba_id_of_two_clients_names_the_second_clients_variable(self, monkeypatch, tmp_path):
        set_env(monkeypatch, DEMO_WABA_IDS="1001", EMPRENDEMY_WABA_IDS="1001")
        assert "EMPRENDEMY_WABA_IDS" in config_error(tmp_path)

    @pytest.mark.parametrize("zone", ["Mars/Base", "Not a zone", "../../etc/passwd"])
    def test_unknown_time_zone_names_the_variable(self, monkeypatch, tmp_path, zone: str):
        set_env(monkeypatch, DEMO_TIMEZONE=zone)
        assert "DEMO_TIMEZONE" in config_error(tmp_path)

    def test_opening_hours_not_json_names_the_variable(self, monkeypatch, tmp_path):
        set_env(monkeypatch, DEMO_OPENING_HOURS="lunes a viernes")
        assert "DEMO_OPENING_HOURS" in config_error(tmp_path)

    @pytest.mark.parametrize("hours", ['{"0": "nine"}', '{"0": "09:00"}', '{"9": "09:00-18:00"}'])
    def test_unreadable_opening_hours_names_the_variable(self, monkeypatch, tmp_path, hours: str):
        set_env(monkeypatch, DEMO_OPENING_HOURS=hours)
        assert "DEMO_OPENING_HOURS" in config_error(tmp_path)

    def test_comma_separated_ids_with_spaces_parse(self, start_app: Any):
        app = start_app({"DEMO_PHONE_NUMBER_IDS": " 2001 , 2003,, ", "DEMO_WABA_IDS": "1001 ,1003 ",
                         "DEMO_APP_SECRET": DEMO.secret, "DEMO_API_KEY": DEMO.api_key})
        assert app.api(DEMO, "/health").json()["phone_number_ids"] == ["2001", "2003"]
        for waba, phone, wa_id in (("1003", "2003", "5491155550901"), ("1001", "2001", "5491155550902")):
            response = app.post_webhook(text_delivery(waba, phone, wa_id, "hola"), DEMO.secret)
            assert response.json() == {"status": "ok", "stored": 1}
        assert sorted(c["user_key"] for c in app.api(DEMO, "/conversations").json()) == ["5491155550901",
                                                                                          "5491155550902"]


class TestSecretsAndSendMode:
    def test_access_token_without_any_app_secret_names_both_variables(self, monkeypatch, tmp_path):
        set_env(monkeypatch, DEMO_PHONE_NUMBER_IDS="2001", DEMO_ACCESS_TOKEN="demo-token")
        message = config_error(tmp_path)
        assert "DEMO_APP_SECRET" in message
        assert "META_APP_SECRET" in message

    def test_access_token_without_phone_ids_still_needs_a_secret(self, monkeypatch, tmp_path):
        set_env(monkeypatch, EMPRENDEMY_ACCESS_TOKEN="emp-token")
        assert "EMPRENDEMY_APP_SECRET" in config_error(tmp_path)

    def test_access_token_with_meta_app_secret_starts(self, monkeypatch, tmp_path):
        set_env(monkeypatch, DEMO_PHONE_NUMBER_IDS="2001", DEMO_ACCESS_TOKEN="demo-token", META_APP_SECRET="meta")
        build(tmp_path)

    def test_live_send_mode_without_token_names_the_token_variable(self, monkeypatch, tmp_path):
        set_env(monkeypatch, WHATSAPP_SEND_MODE="live", DEMO_PHONE_NUMBER_IDS="2001", META_APP_SECRET="meta")
        message = config_error(tmp_path)
        assert "DEMO_ACCESS_TOKEN" in message
        assert "WHATSAPP_SEND_MODE" in message

    def test_live_send_mode_ignores_clients_without_phone_ids(self, start_app: Any):
        env = {**DEMO.env(), "WHATSAPP_SEND_MODE": "LIVE", "EMPRENDEMY_API_KEY": EMPRENDEMY.api_key}
        app = start_app(env)
        assert app.api(DEMO, "/health").json()["send_mode"] == "live"

    def test_sandbox_send_mode_keeps_a_client_with_token_in_sandbox(self, start_app: Any):
        app = start_app({**DEMO.env(), "WHATSAPP_SEND_MODE": "sandbox"})
        assert app.api(DEMO, "/health").json()["send_mode"] == "sandbox"

    def test_whitespace_only_token_counts_as_unset(self, start_app: Any):
        app = start_app({"DEMO_PHONE_NUMBER_IDS": "2001", "DEMO_ACCESS_TOKEN": "   ", "DEMO_API_KEY": DEMO.api_key})
        assert app.api(DEMO, "/health").json()["send_mode"] == "sandbox"


class TestGlobalVariables:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("LOG_LEVEL", "LOUD"),
            ("DEBOUNCE_SECONDS", "-1"),
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_URL", "sqlite:app.db"),
            ("WHATSAPP_SEND_MODE", "sometimes"),
            ("WEBHOOK_MAX_BODY_BYTES", "10"),
            ("SCHEDULER_CONCURRENCY", "0"),
            ("CLIENT_CONCURRENCY", "0"),
            ("CLIENT_CONCURRENCY", "four"),
            ("LLM_CONCURRENCY", "-2"),
            ("OPENAI_TIMEOUT_SECONDS", "soon"),
            ("MAX_TOOL_ROUNDS", "0"),
        ],
    )
    def test_bad_value_names_the_variable(self, monkeypatch, name: str, value: str):
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError) as raised:
            load_settings(_env_file=None)
        assert name in str(raised.value)

    def test_every_bad_variable_is_named_at_once(self, monkeypatch):
        set_env(monkeypatch, LOG_LEVEL="LOUD", DEBOUNCE_SECONDS="-1")
        with pytest.raises(ConfigError) as raised:
            load_settings(_env_file=None)
        assert "LOG_LEVEL" in str(raised.value)
        assert "DEBOUNCE_SECONDS" in str(raised.value)

    def test_bad_global_variable_stops_create_app(self, monkeypatch):
        monkeypatch.setenv("DATABASE_URL", "mysql://x")
        with pytest.raises(ConfigError, match="DATABASE_URL"):
            create_app(env_file=None)

    def test_case_and_spaces_of_enums_are_forgiven(self, monkeypatch):
        set_env(monkeypatch, LOG_LEVEL=" debug ", WHATSAPP_SEND_MODE=" Sandbox ")
        settings = load_settings(_env_file=None)
        assert settings.log_level == "DEBUG"
        assert settings.whatsapp_send_mode == "sandbox"

    def test_missing_clients_package_names_the_variable(self, tmp_path):
        assert "CLIENTS_PACKAGE" in config_error(tmp_path, clients_package=f"no_such_clients_{uuid.uuid4().hex}")


def blank_params() -> list[Any]:
    # A variable left blank (a line of .env.example, or a Heroku config var set to "") means its default.
    return [pytest.param(name, id=name) for name in env_example()]


def resolved(settings: Settings) -> list[tuple[Any, ...]]:
    """What each client resolves to under `settings` and the current environment."""
    out = []
    for spec in discover(settings.clients_package):
        client = build_client(spec, settings, None)
        own = client.settings
        out.append((client.name, client.app_secret, client.verify_token, client.access_token, client.model,
                    client.send_mode, client.offline_message, client.waba_ids, tuple(own.phone_number_ids),
                    own.api_key, getattr(own, "timezone", None), getattr(own, "opening_hours", None)))
    return out


class TestBlankValues:
    def test_env_example_as_is_runs_on_defaults(self, start_app: Any, caplog: pytest.LogCaptureFixture):
        env = {name: value for name, value in env_example().items() if name != "DATABASE_URL"}
        app: RunningApp = start_app(env)

        health = app.http.get(app.url + "/health")
        assert health.status_code == 200
        assert app.http.get(app.url + "/docs").status_code == 404
        closed = app.api(DEMO, "/health")
        assert closed.status_code == 401
        assert [r.reason for r in caplog.records if r.getMessage() == "api.unauthorized"] == [
            "the API is disabled: set DEMO_API_KEY"]
        assert [r for r in caplog.records if r.getMessage() == "webhook.closed"]
        verify = app.http.get(app.url + "/webhook", params={"hub.mode": "subscribe", "hub.verify_token": "",
                                                           "hub.challenge": "1"})
        assert verify.status_code == 403

    def test_env_example_as_env_file_loads(self, monkeypatch, tmp_path):
        copy = tmp_path / ".env"
        copy.write_text(ENV_EXAMPLE.read_text())
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
        settings = load_settings(_env_file=copy)
        assert settings.meta_app_secret is None
        assert settings.whatsapp_send_mode is None
        create_app(settings, env_file=copy)

    @pytest.mark.parametrize("name", blank_params())
    def test_blank_variable_counts_as_unset(self, monkeypatch, name: str):
        monkeypatch.setenv(name, "")
        try:
            blank = load_settings(_env_file=None)
            blank_clients = resolved(blank)
        except Exception as error:  # noqa: BLE001 - any failure here is the behaviour under test
            pytest.fail(f"{name}= (blank) stopped startup: {type(error).__name__}: {error}")
        monkeypatch.delenv(name)
        unset = load_settings(_env_file=None)
        assert blank == unset
        assert blank_clients == resolved(unset)


GOOD_CLIENT = '''
from core.clients import ClientSpec
from core.llm.instructions import SinglePrompt

client = ClientSpec(name="good", instructions=SinglePrompt("You are the good test shop."))
'''

BROKEN_CLIENT = '''
raise RuntimeError("broken client on purpose")
'''


@pytest.fixture
def clients_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A throwaway clients package under tmp_path: `good` and `broken` (raises on import), plus a `_template`."""
    name = f"tmp_clients_{uuid.uuid4().hex}"
    root = tmp_path / "pkgs" / name
    for folder, source in (("good", GOOD_CLIENT), ("broken", BROKEN_CLIENT), ("_template", BROKEN_CLIENT)):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text(source)
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return name


class TestClientDiscovery:
    def test_client_that_fails_to_import_is_logged_and_skipped(
        self, start_app: Any, clients_package: str, caplog: pytest.LogCaptureFixture
    ):
        app = start_app({"GOOD_PHONE_NUMBER_IDS": "2101", "GOOD_API_KEY": "good-key"}, clients_package=clients_package,
                        allow_unsigned_webhooks=True)

        failed = [r for r in caplog.records if r.getMessage() == "clients.import_failed"]
        assert [r.client for r in failed] == ["broken"]
        assert failed[0].levelno == logging.ERROR
        assert failed[0].exc_info and "broken client on purpose" in str(failed[0].exc_info[1])
        health = app.http.get(app.url + "/api/v1/good/health", headers={"Authorization": "Bearer good-key"})
        assert health.status_code == 200
        assert health.json()["phone_number_ids"] == ["2101"]
        assert app.http.get(app.url + "/api/v1/broken/health").status_code == 404
        response = app.post_webhook(text_delivery("1101", "2101", "5491155550950", "hola"), None)
        assert response.json() == {"status": "ok", "stored": 1}

    def test_clients_package_from_the_environment(self, monkeypatch, tmp_path, clients_package: str,
                                                  caplog: pytest.LogCaptureFixture):
        monkeypatch.setenv("CLIENTS_PACKAGE", clients_package)
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'app.db'}")
        app = create_app(load_settings(_env_file=None), env_file=None)
        mounted = sorted(path for path in (getattr(route, "path", "") for route in app.routes) if path.startswith("/api/v1/"))
        assert mounted == ["/api/v1/good"]
        assert [r.client for r in caplog.records if r.getMessage() == "clients.import_failed"] == ["broken"]

    def test_broken_client_does_not_hide_bad_config_of_a_good_one(self, monkeypatch, tmp_path, clients_package: str):
        monkeypatch.setenv("GOOD_PHONE_NUMBER_IDS", "abc")
        assert "GOOD_PHONE_NUMBER_IDS" in config_error(tmp_path, clients_package=clients_package)

    def test_default_package_holds_demo_and_emprendemy_not_the_template(self):
        assert sorted(spec.name for spec in discover("clients")) == sorted([DEMO.name, EMPRENDEMY.name])


class TestEnvExample:
    def test_every_setting_is_listed_with_a_comment(self):
        from clients.demo.settings import DemoSettings
        from core.clients import ClientSettings
        from core.knowledge.settings import KnowledgeSettings

        listed = env_example()
        expected = {name.upper() for name in Settings.model_fields}
        expected |= {name.upper() for name in KnowledgeSettings.model_fields if name not in {"clients_package"}}
        expected |= {f"DEMO_{name.upper()}" for name in DemoSettings.model_fields}
        expected |= {f"EMPRENDEMY_{name.upper()}" for name in ClientSettings.model_fields}
        assert sorted(expected - set(listed)) == []
        lines = ENV_EXAMPLE.read_text().splitlines()
        for index, line in enumerate(lines):
            if re.match(r"^[A-Z][A-Z0-9_]*=", line) and not line.startswith("EMPRENDEMY_"):
                above = lines[index - 1]
                assert above.startswith("#") or re.match(r"^[A-Z][A-Z0-9_]*=", above), f"{line} has no comment"

    def test_no_real_secret_values(self):
        for name, value in env_example().items():
            if name.endswith(("_KEY", "_SECRET", "_TOKEN", "_PASSWORD")):
                assert value == "", f"{name} must be blank in .env.example"


class TestStaffEmailSettings:
    def test_every_client_reads_its_smtp_recipients_as_a_list(self, monkeypatch, tmp_path):
        set_env(monkeypatch, EMPRENDEMY_SMTP_HOST="smtp.example.com", EMPRENDEMY_SMTP_FROM="bot@example.com",
                EMPRENDEMY_SMTP_TO="ventas@example.com, dueño@example.com")
        settings = Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'x.db'}")
        registry = load_registry(discover(settings.clients_package), settings, None)
        smtp = registry.get("emprendemy").settings.smtp_config()
        assert smtp.recipients == ("ventas@example.com", "dueño@example.com")


class TestConcurrencyDefaults:
    def test_a_campaign_burst_of_one_client_is_not_capped_by_default(self, monkeypatch):
        for name in ("SCHEDULER_CONCURRENCY", "CLIENT_CONCURRENCY", "LLM_CONCURRENCY"):
            monkeypatch.delenv(name, raising=False)
        settings = load_settings(_env_file=None)
        assert settings.scheduler_concurrency >= 200  # 200 people answering a campaign at once all start
        assert settings.client_concurrency is None and settings.llm_concurrency is None

    def test_a_blank_client_concurrency_means_no_cap(self, monkeypatch):
        monkeypatch.setenv("CLIENT_CONCURRENCY", "")
        assert load_settings(_env_file=None).client_concurrency is None
