"""Clients: what a client folder declares, how they are found, and the routing table of WhatsApp ids."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict, SettingsError

from core.config import Settings, describe_settings_error, describe_validation_error
from core.errors import ConfigError
from core.llm.instructions import ClassifiedPrompts, Instructions
from core.llm.tools import ToolSet
from core.notify.email import EmailSettings
from core.ops.prices import PriceTable
from core.sandbox import is_sandbox_number, sandbox_number
from core.storage.records import Debounce
from core.whatsapp.templates import read_templates_file

log = logging.getLogger("core.clients")

DEFAULT_OFFLINE_MESSAGE = "Thanks for your message. We will get back to you shortly."
DEFAULT_FALLBACK_MESSAGE = "Sorry, we cannot answer right now. A person from our team will get back to you soon."

SendMode = Literal["live", "sandbox"]


class ClientSettings(EmailSettings):
    """Variables every client has, read with the prefix `<NAME>_`; a client subclasses it to add its own.

    The SMTP ones (`<NAME>_SMTP_HOST`…) come from EmailSettings: where staff notifications go."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_ignore_empty=True)

    waba_ids: Annotated[list[str], NoDecode] = []
    phone_number_ids: Annotated[list[str], NoDecode] = []
    access_token: SecretStr | None = None
    app_secret: SecretStr | None = None
    verify_token: SecretStr | None = None
    api_key: SecretStr | None = None
    openai_model: str | None = None
    classifier_model: str | None = None
    offline_message: str | None = None
    fallback_message: str | None = None
    debounce_seconds: float | None = Field(default=None, ge=0)
    debounce_max_seconds: float | None = Field(default=None, ge=0)
    human_idle_minutes: float = Field(default=60, gt=0)
    vision: bool = False
    # Send what the model writes beside a tool call ("let me check…") before its answer, as a person would.
    send_text_beside_tools: bool = True
    # Buttons, lists, images, documents and locations go out as such; false sends their readable text instead
    # (docs/rich-messages.md), e.g. for a number whose people use apps that do not show them.
    rich_messages: bool = True
    # Credits: past either budget this calendar month (UTC, from the usage ledger) the bot answers with
    # budget_message instead of calling the model, and staff get one email a month (docs/usage.md).
    monthly_budget_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    monthly_budget_tokens: int | None = Field(default=None, gt=0)
    budget_message: str | None = None
    # Days this client's message content and media are kept (unset: RETENTION_DAYS; 0: forever).
    retention_days: int | None = Field(default=None, ge=0)
    # A sandbox client's message templates (a JSON file shaped like the Graph API's list); live clients sync theirs.
    templates_file: Path | None = None
    # A message that is exactly one of these (any case, accents and surrounding spaces ignored) opts the person out
    # of broadcasts; they are told so once, with opt_out_message, and the bot does not answer it otherwise.
    opt_out_keywords: Annotated[list[str], NoDecode] = ["baja", "stop"]
    opt_out_message: str = ("Listo, no vas a recibir más mensajes masivos de nuestra parte. "
                            "Podés seguir escribiéndonos cuando quieras.")

    @field_validator("opt_out_keywords", mode="before")
    @classmethod
    def _split_keywords(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("opt_out_message")
    @classmethod
    def _message_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the opt-out confirmation cannot be blank")
        return value

    @field_validator("waba_ids", "phone_number_ids", mode="before")
    @classmethod
    def _split_id_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("waba_ids", "phone_number_ids")
    @classmethod
    def _digits_only(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.isdigit():
                raise ValueError(f"{item!r} is not a numeric Meta id")
        return value

    @field_validator("templates_file")
    @classmethod
    def _readable_templates(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                read_templates_file(value)
            except (OSError, ValueError) as error:
                raise ValueError(f"cannot read templates from {value}: {error}") from None
        return value

    @field_validator("access_token", "app_secret", "verify_token", "api_key", "openai_model", "classifier_model",
                     "offline_message", "fallback_message", "debounce_seconds", "debounce_max_seconds",
                     "monthly_budget_usd", "monthly_budget_tokens", "budget_message", "retention_days", mode="before")
    @classmethod
    def _blank_client_value_is_unset(cls, value: object) -> object:
        # Named apart from EmailSettings' validators: a same-named one here would silently replace the parent's.
        return None if isinstance(value, str) and not value.strip() else value


@dataclass(frozen=True)
class ClientSpec:
    """What a client folder declares in its `__init__.py` as `client = ClientSpec(...)`."""

    name: str
    instructions: Instructions
    settings_class: type[ClientSettings] = ClientSettings
    tools: Sequence[Callable[..., Any]] = ()
    router: APIRouter | None = None
    offline_message: str = DEFAULT_OFFLINE_MESSAGE
    fallback_message: str = DEFAULT_FALLBACK_MESSAGE
    # JSON files of the client's data seeded into the store under these keys when missing (e.g. a catalogue),
    # then edited there (through the client's own endpoints).
    seed_documents: Mapping[str, Path] = field(default_factory=dict)

    def toolsets(self) -> dict[str | None, ToolSet]:
        """The tools each category answers with (key None for a single prompt); the client's tools are in all."""
        if isinstance(self.instructions, ClassifiedPrompts):
            return {c.name: ToolSet([*self.tools, *c.tools]) for c in self.instructions.categories}
        return {None: ToolSet(self.tools)}


@dataclass(frozen=True)
class Client:
    """A client ready to run: its declaration, its settings and what they resolve to."""

    spec: ClientSpec
    settings: ClientSettings
    toolsets: dict[str | None, ToolSet]
    app_secret: str | None
    verify_token: str | None
    access_token: str | None
    model: str
    classifier_model: str
    send_mode: SendMode
    offline_message: str
    fallback_message: str
    debounce: Debounce
    waba_ids: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def env_prefix(self) -> str:
        return env_prefix(self.spec.name)

    def tools(self, category: str | None = None) -> ToolSet:
        return self.toolsets.get(category) or next(iter(self.toolsets.values()))


def env_prefix(name: str) -> str:
    return f"{name.upper()}_"


def discover(package: str = "clients") -> list[ClientSpec]:
    """Import every client package not starting with `_`; one that fails is logged and skipped."""
    try:
        root = importlib.import_module(package)
    except ImportError as error:
        raise ConfigError(f"CLIENTS_PACKAGE: cannot import {package!r} ({error})") from error
    if not hasattr(root, "__path__"):
        raise ConfigError(f"CLIENTS_PACKAGE: {package!r} is a module, not a package of client folders")
    specs: list[ClientSpec] = []
    for module in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
        if module.name.startswith("_") or not module.ispkg:
            continue
        try:
            imported = importlib.import_module(f"{package}.{module.name}")
            spec = getattr(imported, "client", None)
            if not isinstance(spec, ClientSpec):
                raise TypeError("the package must define `client = ClientSpec(...)`")
            if spec.name != module.name:
                raise TypeError(f"ClientSpec name {spec.name!r} differs from its folder {module.name!r}")
            spec.toolsets()  # a bad tool signature is a client defect, found here
        except Exception:
            log.exception("clients.import_failed", extra={"client": module.name})
            continue
        specs.append(spec)
    return specs


def build_client(spec: ClientSpec, settings: Settings, env_file: Path | None) -> Client:
    """Read one client's `<NAME>_` variables and resolve fallbacks to the global ones."""
    prefix = env_prefix(spec.name)
    try:
        own = spec.settings_class(_env_prefix=prefix, _env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as error:
        raise ConfigError(f"Invalid configuration of client {spec.name}: {describe_validation_error(error, prefix)}") from error
    except SettingsError as error:
        raise ConfigError(f"Invalid configuration of client {spec.name}: {describe_settings_error(error, prefix)}") from error
    access_token = _reveal(own.access_token)
    mode = settings.whatsapp_send_mode or ("live" if access_token else "sandbox")
    if mode == "live" and access_token is None and own.phone_number_ids:
        raise ConfigError(f"{prefix}ACCESS_TOKEN must be set when WHATSAPP_SEND_MODE=live")
    debounce_seconds = settings.debounce_seconds if own.debounce_seconds is None else own.debounce_seconds
    debounce_max = settings.debounce_max_seconds if own.debounce_max_seconds is None else own.debounce_max_seconds
    model = own.openai_model or settings.openai_model
    return Client(
        spec=spec,
        settings=own,
        toolsets=spec.toolsets(),
        app_secret=_reveal(own.app_secret) or _reveal(settings.meta_app_secret),
        verify_token=_reveal(own.verify_token) or _reveal(settings.whatsapp_verify_token),
        access_token=access_token,
        model=model,
        classifier_model=own.classifier_model or settings.openai_classifier_model or model,
        send_mode=mode,
        offline_message=own.offline_message or spec.offline_message,
        fallback_message=own.fallback_message or spec.fallback_message,
        debounce=Debounce(debounce_seconds, max(debounce_max, debounce_seconds)),
        waba_ids=frozenset(own.waba_ids),
    )


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


@dataclass(frozen=True)
class Route:
    """Where an entry of a webhook goes: a client, or the reason there is none."""

    client: Client | None
    reason: str = ""
    # Addressed to the client's sandbox number (`python -m core chat`): it must be signed with the sandbox secret.
    sandbox: bool = False


class ClientRegistry:
    """All running clients and the routing table phone_number_id / WABA id → client."""

    def __init__(self, clients: Iterable[Client]) -> None:
        self._by_name: dict[str, Client] = {}
        self._by_phone: dict[str, Client] = {}
        self._by_waba: dict[str, Client] = {}
        self._sandbox: dict[str, Client] = {}
        # Built once: the registry never changes, and the webhook asks for a route and the secrets on every delivery.
        self._routes: dict[str, Route] = {}
        for client in clients:
            self._by_name[client.name] = client
            self._routes[client.name] = Route(client)
            for phone in client.settings.phone_number_ids:
                other = self._by_phone.setdefault(phone, client)
                if other is not client:
                    raise ConfigError(
                        f"{client.env_prefix}PHONE_NUMBER_IDS: {phone} is already used by client {other.name}"
                    )
            if client.send_mode == "sandbox":
                self._sandbox[sandbox_number(client.name)] = client
            for waba in client.waba_ids:
                other = self._by_waba.setdefault(waba, client)
                if other is not client:
                    raise ConfigError(f"{client.env_prefix}WABA_IDS: {waba} is already used by client {other.name}")
        self._app_secrets = frozenset(client.app_secret for client in self if client.app_secret)
        self._verify_tokens = frozenset(client.verify_token for client in self if client.verify_token)

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Client | None:
        return self._by_name.get(name)

    def route(self, waba_id: str, phone_number_id: str | None) -> Route:
        """Resolve by phone_number_id and check it against the WABA id; WABA alone when no phone is given."""
        if is_sandbox_number(phone_number_id):
            client = self._sandbox.get(phone_number_id)  # type: ignore[arg-type]
            return Route(client, sandbox=True) if client else Route(None, "no client in sandbox mode has that number")
        if phone_number_id:
            client = self._by_phone.get(phone_number_id)
            if client is None:
                return Route(None, "unknown phone_number_id")
            if client.waba_ids and waba_id not in client.waba_ids:
                return Route(None, f"WABA id does not belong to client {client.name}")
            return self._routes[client.name]
        client = self._by_waba.get(waba_id)
        return self._routes[client.name] if client else Route(None, "unknown WABA id")

    def app_secrets(self) -> frozenset[str]:
        return self._app_secrets

    def verify_tokens(self) -> frozenset[str]:
        return self._verify_tokens


def load_registry(specs: Iterable[ClientSpec], settings: Settings, env_file: Path | None) -> ClientRegistry:
    """Build every client from the environment and check the whole deployment's configuration."""
    registry = ClientRegistry(build_client(spec, settings, env_file) for spec in specs)
    secrets = registry.app_secrets() | ({settings.meta_app_secret.get_secret_value()} if settings.meta_app_secret else set())
    prices = PriceTable(settings.model_prices)
    for client in registry:
        unpriced = sorted({client.model, client.classifier_model} - {m for m in (client.model, client.classifier_model)
                                                                      if prices.price(m) is not None})
        if client.settings.monthly_budget_usd is not None and unpriced:
            raise ConfigError(f"{client.env_prefix}MONTHLY_BUDGET_USD needs the price of {', '.join(unpriced)}: add it "
                              "to MODEL_PRICES (JSON, USD per 1M tokens), or set a budget in tokens instead")
        if client.access_token and not client.app_secret:
            raise ConfigError(
                f"{client.env_prefix}APP_SECRET or META_APP_SECRET must be set when {client.env_prefix}ACCESS_TOKEN is set: "
                "webhooks that would make this client send real messages must be signed"
            )
        if secrets and not client.app_secret and client.settings.phone_number_ids:
            log.warning(
                "clients.no_app_secret",
                extra={"client": client.name, "detail": f"set {client.env_prefix}APP_SECRET: its webhooks will be rejected"},
            )
    if settings.allow_unsigned_webhooks:
        live = live_settings(settings, registry)
        if live:
            raise ConfigError(f"ALLOW_UNSIGNED_WEBHOOKS=true is for local development and cannot be used with live "
                              f"settings ({', '.join(live)}): anyone could make the bot act. Unset it and set "
                              "META_APP_SECRET (or <NAME>_APP_SECRET)")
        if not secrets:
            log.warning("webhook.unsigned_accepted",
                        extra={"detail": "ALLOW_UNSIGNED_WEBHOOKS=true and no app secret: unsigned webhooks are accepted"})
    elif not secrets:
        log.warning("webhook.closed", extra={"detail": "no app secret is set: webhooks from Meta are refused (401) until "
                                                       "META_APP_SECRET is set; `python -m core chat` still works"})
    return registry


def live_settings(settings: Settings, registry: ClientRegistry) -> list[str]:
    """The variables that make this deployment act on the world: a token, an LLM key, SMTP, a Postgres database."""
    found = [f"{client.env_prefix}ACCESS_TOKEN" for client in registry if client.access_token]
    found += [f"{client.env_prefix}SMTP_HOST" for client in registry if client.settings.smtp_config() is not None]
    if settings.openai_api_key is not None:
        found.append("OPENAI_API_KEY")
    if not settings.database_url.startswith("sqlite:"):
        found.append("DATABASE_URL")
    return found
