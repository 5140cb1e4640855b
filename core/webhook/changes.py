"""What the webhook does with changes other than messages and statuses: template news and Business-app echoes."""

from __future__ import annotations

import logging
from datetime import datetime
from collections.abc import Callable
from typing import Any, Protocol

from core.clients import Client
from core.storage.base import EchoStore, TemplateStore
from core.webhook.echoes import ECHOES_FIELD, parse_echoes
from core.webhook.events import OtherChange
from core.whatsapp.templates import APPROVED, status_of_event

log = logging.getLogger("core.webhook")


class ChangeStore(TemplateStore, EchoStore, Protocol):
    """What these changes write: templates' news and echoed messages."""

TEMPLATE_STATUS_FIELD = "message_template_status_update"
TEMPLATE_QUALITY_FIELD = "message_template_quality_update"
# Changes after which the stored template may be out of date in ways only a sync can tell (its components, its
# category): the template is fetched again.
TEMPLATE_RESYNC_FIELDS = frozenset({"message_template_components_update", "template_category_update"})


async def take_change(store: ChangeStore, client: Client, change: OtherChange, now: datetime,
                      resync: Callable[[str], None]) -> None:
    """Act on one change; `resync(client_name)` asks for the client's templates to be synced again.

    Echoes are not counted in the delivery's `stored`: that counts the people's messages, which the bot answers."""
    fields = {"client": client.name, "waba_id": change.waba_id, "field": change.field}
    if change.field == ECHOES_FIELD:
        await _echoes(store, client, change, fields, now)
    if change.field == TEMPLATE_STATUS_FIELD:
        await _template_status(store, client, change.value, fields, now, resync)
    elif change.field == TEMPLATE_QUALITY_FIELD:
        await _template_quality(store, client, change.value, fields, now, resync)
    elif change.field in TEMPLATE_RESYNC_FIELDS:
        log.info("webhook.template_changed", extra=fields)
        resync(client.name)
    else:  # account and number updates: rare, and an operator's news
        log.info("webhook.other_change", extra=fields)


async def _echoes(store: EchoStore, client: Client, change: OtherChange, fields: dict[str, Any], now: datetime) -> None:
    echoes, problems = parse_echoes(change)
    for problem in problems:
        log.warning("webhook.malformed", extra={**fields, "detail": problem})
    for echo in echoes:
        conversation = await store.record_echo(client.name, echo, now)
        log.info("webhook.echo", extra={**fields, "wamid": echo.wamid, "conversation": conversation,
                                        "duplicate": conversation is None})


def _template_key(value: dict[str, Any]) -> tuple[str, str] | None:
    name, language = value.get("message_template_name"), value.get("message_template_language")
    return (name, language) if isinstance(name, str) and name and isinstance(language, str) and language else None


async def _template_status(store: TemplateStore, client: Client, value: dict[str, Any], fields: dict[str, Any],
                           now: datetime, resync: Callable[[str], None]) -> None:
    key, event = _template_key(value), value.get("event")
    if key is None or not isinstance(event, str) or not event:
        log.warning("webhook.malformed", extra={**fields, "detail": "template status without name, language or event"})
        return
    status = status_of_event(event)
    category = value.get("message_template_category")
    known = await store.update_template(client.name, *key, now, status=status,
                                        category=category.upper() if isinstance(category, str) and category else None)
    log.info("webhook.template_status", extra={**fields, "template": key[0], "language": key[1], "status": status,
                                               "reason": value.get("reason"), "known": known})
    # A template approved (or unknown here) may have components the store lacks: fetch it from the Graph API.
    if not known or status == APPROVED:
        resync(client.name)


async def _template_quality(store: TemplateStore, client: Client, value: dict[str, Any], fields: dict[str, Any],
                            now: datetime, resync: Callable[[str], None]) -> None:
    key, quality = _template_key(value), value.get("new_quality_score")
    if key is None or not isinstance(quality, str) or not quality:
        log.warning("webhook.malformed", extra={**fields, "detail": "template quality without name, language or score"})
        return
    known = await store.update_template(client.name, *key, now, quality=quality.upper())
    log.info("webhook.template_quality", extra={**fields, "template": key[0], "language": key[1],
                                                "quality": quality.upper(), "known": known})
    if not known:
        resync(client.name)
