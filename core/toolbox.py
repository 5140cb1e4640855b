"""The running service's parts that tools may use, behind the Toolbox protocol of core.llm.tools."""

from __future__ import annotations

import logging
from typing import Any

from core.knowledge.base import Passage, Retriever
from core.notify.email import EmailNotifier
from core.storage.base import Store
from core.clock import Clock

log = logging.getLogger("core.toolbox")


class ServiceToolbox:
    def __init__(self, store: Store, retriever: Retriever, notifier: EmailNotifier, clock: Clock, *, top_k: int) -> None:
        self._store = store
        self._clock = clock
        self.retriever = retriever
        self._notifier = notifier
        self._top_k = top_k

    async def search_knowledge(self, client: str, query: str) -> list[Passage]:
        return await self.retriever.search(client, query, self._top_k)

    def notify_staff(self, client: str, settings: Any, subject: str, body: str, reply_to: str | None = None) -> bool:
        smtp = settings.smtp_config()
        if smtp is None:
            log.warning("notify.no_smtp", extra={"client": client, "subject": subject,
                                                 "detail": f"set {client.upper()}_SMTP_HOST and _SMTP_TO to email staff"})
            return False
        return self._notifier.notify(client, smtp, subject, body, reply_to=reply_to)

    async def get_document(self, client: str, key: str) -> Any | None:
        return await self._store.get_document(client, key)

    async def put_document(self, client: str, key: str, data: Any) -> None:
        await self._store.put_document(client, key, data, self._clock.now())

    async def add_record(self, client: str, kind: str, data: dict[str, Any], conversation_id: int | None) -> int:
        return await self._store.add_record(client, kind, data, conversation_id, self._clock.now())
