"""The sandbox sender: logs what would be sent (the store keeps the message as usual) and sends nothing."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from core.whatsapp.client import Media, Recipient, recipient_fields
from core.whatsapp.errors import WhatsAppError

log = logging.getLogger("core.whatsapp.sandbox")


class SandboxSender:
    """Stands in for the Graph API on a laptop or for a client with no access token."""

    async def send_text(self, phone_number_id: str, token: str | None, to: Recipient, body: str) -> str:
        wamid = f"sandbox.{uuid.uuid4().hex}"
        log.info("whatsapp.sandbox_send", extra={"phone_number_id": phone_number_id, **recipient_fields(to),
                                                  "wamid": wamid, "text": body})
        return wamid

    async def send_template(self, phone_number_id: str, token: str | None, to: Recipient,
                            template: dict[str, Any], callback_data: str | None = None) -> str:
        wamid = f"sandbox.{uuid.uuid4().hex}"
        log.info("whatsapp.sandbox_send_template", extra={"phone_number_id": phone_number_id, **recipient_fields(to),
                                                           "wamid": wamid, "template": template.get("name")})
        return wamid

    async def send_message(self, phone_number_id: str, token: str | None, to: Recipient, message_type: str,
                           content: dict[str, Any]) -> str:
        wamid = f"sandbox.{uuid.uuid4().hex}"
        log.info("whatsapp.sandbox_send_rich", extra={"phone_number_id": phone_number_id, **recipient_fields(to),
                                                      "wamid": wamid, "type": message_type})
        return wamid

    async def mark_read(self, phone_number_id: str, token: str | None, wamid: str, typing: bool) -> None:
        log.debug("whatsapp.sandbox_mark_read", extra={"phone_number_id": phone_number_id, "wamid": wamid})

    async def download_media(self, media_id: str, token: str | None, max_bytes: int) -> Media:
        raise WhatsAppError("the sandbox cannot download media (no access token)")
