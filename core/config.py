"""Global settings, read from the environment (and `.env`) with pydantic-settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict, SettingsError

from core.errors import ConfigError
from core.knowledge.settings import KnowledgeSettings
from core.ops.prices import Price, parse_model_prices
from core.metrics import multiprocess_dir

DEFAULT_GRAPH_URL = "https://graph.facebook.com/v26.0"


class Settings(KnowledgeSettings):
    """Variables that apply to the whole deployment (see `.env.example`); knowledge search's are inherited."""

    # A blank value (as in .env.example) means "use the default", not "set to empty".
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True, env_ignore_empty=True)

    database_url: str = "sqlite:///./data/app.db"
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-5.4-mini"
    openai_classifier_model: str | None = None
    openai_transcription_model: str = "gpt-transcribe"
    llm_retry_attempts: int = Field(default=4, ge=1)
    llm_retry_base_seconds: float = Field(default=1.0, gt=0)
    llm_deadline_seconds: float = Field(default=120.0, gt=0)
    openai_timeout_seconds: float = Field(default=60.0, gt=0)
    meta_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    # Signs `python -m core chat`'s deliveries to sandbox clients; unset: a random one kept in data/sandbox_secret.
    sandbox_secret: SecretStr | None = None
    whatsapp_api_base_url: str = DEFAULT_GRAPH_URL
    whatsapp_send_mode: Literal["live", "sandbox"] | None = None
    whatsapp_timeout_seconds: float = Field(default=15.0, gt=0)
    whatsapp_rate_per_second: float = Field(default=80.0, gt=0)
    whatsapp_pair_interval_seconds: float = Field(default=1.0, ge=0)
    # A broadcast's first pause on Meta's rate or spam errors (130429, 131048, 131056); doubled each pause in a row.
    broadcast_pause_seconds: float = Field(default=5.0, gt=0, le=3600)
    # The part of WHATSAPP_RATE_PER_SECOND broadcasts use, all processes together; replies keep the rest.
    broadcast_rate_share: float = Field(default=0.9, gt=0, le=1)
    whatsapp_retry_attempts: int = Field(default=5, ge=1)
    whatsapp_retry_base_seconds: float = Field(default=1.0, gt=0)
    typing_refresh_seconds: float = Field(default=20.0, gt=0)
    media_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    media_archive_dir: Path = Path("data/media")
    supabase_url: str | None = None
    supabase_service_key: SecretStr | None = None
    supabase_media_bucket: str = "whatsapp-media"
    history_token_budget: int = Field(default=6000, ge=100)
    debounce_seconds: float = Field(default=3.0, ge=0)
    debounce_max_seconds: float = Field(default=15.0, ge=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    scheduler_poll_seconds: float = Field(default=2.0, gt=0)
    # Turns in flight per process: they mostly wait on the network, so memory bounds them, not CPU.
    scheduler_concurrency: int = Field(default=256, ge=1)
    # A hard cap on one client's turns per process, if the operator wants one; unset: a fair share under contention.
    client_concurrency: int | None = Field(default=None, ge=1)
    # Calls in flight to one model endpoint at most; the limiter starts here and adapts to 429s. Unset: as above.
    llm_concurrency: int | None = Field(default=None, ge=1)
    housekeeping_seconds: float = Field(default=30.0, gt=0)
    # Days message content, payloads and archived media are kept (the replaced platform's promise); 0: forever.
    retention_days: int = Field(default=14, ge=0)
    # Each client's templates are synced from the Graph API at startup, on template webhooks, and this often; 0: never
    # on a schedule.
    template_sync_seconds: float = Field(default=3600.0, ge=0)
    # false in web processes when a separate `worker` process (Procfile) answers the conversations.
    run_scheduler: bool = True
    history_messages: int = Field(default=30, ge=0)
    max_tool_rounds: int = Field(default=5, ge=1)
    # Bounds on one turn (core/llm/bounds.py): what one person's messages can make the service do.
    max_tool_calls_per_round: int = Field(default=5, ge=1)
    max_tool_calls_per_turn: int = Field(default=12, ge=1)
    max_batch_messages: int = Field(default=40, ge=2)
    max_images_per_turn: int = Field(default=4, ge=0)
    max_reply_characters: int = Field(default=6000, ge=100)
    max_records_per_conversation_per_day: int = Field(default=3, ge=1)
    # Failed attempts at one batch (a reply that cannot be stored, a tool that crashes…) before it is ended.
    turn_max_failures: int = Field(default=3, ge=1)
    webhook_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # text: `event key=value …` lines; json: one JSON object per line with the same fields (core/logs.py).
    log_format: Literal["text", "json"] = "text"
    # Bearer token GET /metrics asks for; unset: /metrics is open (keep it off the public internet then).
    metrics_token: SecretStr | None = None
    # prometheus-client's multiprocess folder (gunicorn's workers add up); read from the process environment.
    prometheus_multiproc_dir: Path | None = None
    # On SIGTERM, how long running turns may finish before they are handed back: Heroku sends SIGKILL 30 s after
    # SIGTERM and gunicorn's graceful timeout (Procfile) is 25 s, so the store still closes in time.
    shutdown_grace_seconds: float = Field(default=20.0, gt=0, le=25)
    # Local development only: accept webhooks nobody signed while no app secret is set. Refused beside live settings.
    allow_unsigned_webhooks: bool = False
    # /docs, /redoc and /openapi.json of the root app; off, so nothing unauthenticated describes the deployment.
    api_docs: bool = False
    port: int = 8000
    # Signs the console's session cookies; unset: a random one kept in data/console_secret (one machine only).
    console_secret: SecretStr | None = None
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # Failed console logins allowed per email, and per address, within the window; then refused until it passes.
    console_login_max_failures: int = Field(default=5, ge=1)
    console_login_max_failures_per_ip: int = Field(default=30, ge=1)
    console_login_window_minutes: float = Field(default=15.0, gt=0)
    # How often an open console page's live connection asks the store for changes.
    console_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    clients_package: str = "clients"
    # Prices of models beyond (or instead of) the defaults in core/ops/prices.py: JSON, USD per 1M tokens.
    model_prices: Annotated[dict[str, Price], NoDecode] = {}

    @field_validator("openai_api_key", "openai_base_url", "openai_classifier_model", "meta_app_secret",
                     "whatsapp_verify_token", "sandbox_secret", "console_secret", "supabase_url", "supabase_service_key",
                     "metrics_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("model_prices", mode="before")
    @classmethod
    def _prices_json(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_model_prices(value) if value.strip() else {}
        return value

    @field_validator("whatsapp_send_mode", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return (value.strip().lower() or None) if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("prometheus_multiproc_dir")
    @classmethod
    def _multiprocess_folder(cls, value: Path | None) -> Path | None:
        if value is None:
            return value
        try:
            value.mkdir(parents=True, exist_ok=True)  # a fresh dyno has none; gunicorn.conf.py empties it at start
        except OSError as error:
            raise ValueError(f"{value} is not a folder that can be used: {error.strerror or error}") from error
        if multiprocess_dir() is None:
            # prometheus-client chooses its mode when imported, from os.environ: a .env line comes too late.
            raise ValueError("must be set in the process environment (not only in .env): prometheus-client reads "
                             "it when it is imported")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("whatsapp_api_base_url", "openai_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("console_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("use at least 32 random characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("use sqlite:///<path> or postgresql://<user>:<password>@<host>:<port>/<database>")
        return value

    @model_validator(mode="after")
    def _supabase_pair(self) -> Settings:
        if (self.supabase_url is None) != (self.supabase_service_key is None):
            missing = "SUPABASE_SERVICE_KEY" if self.supabase_service_key is None else "SUPABASE_URL"
            raise ValueError(f"{missing} must be set too: media go to Supabase Storage with both, else to a folder")
        return self

    @property
    def sqlite_path(self) -> Path:
        """Filesystem path of the SQLite database named by DATABASE_URL."""
        return Path(self.database_url.removeprefix("sqlite:///"))


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """Turn a pydantic error into one line per bad variable, named as in the environment."""
    lines = []
    for item in error.errors():
        name = prefix + "_".join(str(part) for part in item["loc"]).upper() if item["loc"] else prefix.rstrip("_")
        lines.append(f"{name}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read global settings, raising ConfigError that names each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(f"Invalid configuration: {describe_validation_error(error)}") from error
    except SettingsError as error:
        raise ConfigError(f"Invalid configuration: {describe_settings_error(error)}") from error


def describe_settings_error(error: SettingsError, prefix: str = "") -> str:
    """pydantic-settings fails before validation on a value it cannot decode (bad JSON): name the variable."""
    match = re.search(r'field "([^"]+)"', str(error))
    name = f"{prefix}{match.group(1).upper()}" if match else "a variable"
    return f"{name}: cannot be read ({error.__cause__ or error})"
