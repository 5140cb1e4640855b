"""RETENTION_DAYS and <NAME>_RETENTION_DAYS: defaults, overrides, and startup errors that name the variable."""

from __future__ import annotations

import pytest

from core.clients import build_client, discover
from core.config import Settings, load_settings
from core.errors import ConfigError
from core.ops.retention import Retention, retentions


def demo_spec():
    return next(spec for spec in discover("clients") if spec.name == "demo")


def test_fourteen_days_by_default_as_the_platform_promised():
    assert Settings(_env_file=None).retention_days == 14


@pytest.mark.parametrize("value", ["-1", "two weeks", "1.5"])
def test_a_bad_global_value_stops_startup_naming_it(monkeypatch: pytest.MonkeyPatch, value: str):
    monkeypatch.setenv("RETENTION_DAYS", value)
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        load_settings(_env_file=None)


def test_a_clients_own_value_overrides_and_blank_means_the_global(monkeypatch: pytest.MonkeyPatch):
    settings = Settings(_env_file=None, retention_days=14)
    monkeypatch.setenv("DEMO_RETENTION_DAYS", "0")
    assert build_client(demo_spec(), settings, None).settings.retention_days == 0
    monkeypatch.setenv("DEMO_RETENTION_DAYS", " ")
    client = build_client(demo_spec(), settings, None)
    assert client.settings.retention_days is None
    assert retentions({"demo": client.settings.retention_days, "other": 30}, 14) == \
        [Retention("demo", 14), Retention("other", 30)]


def test_a_bad_client_value_stops_startup_naming_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEMO_RETENTION_DAYS", "-3")
    with pytest.raises(ConfigError, match="DEMO_RETENTION_DAYS"):
        build_client(demo_spec(), Settings(_env_file=None), None)
