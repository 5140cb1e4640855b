"""The running service's parts that tools may use, behind the Toolbox protocol of core.llm.tools."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.knowledge.base import Passage, Retriever
from core.storage.base import ClientDataStore
from core.clock import Clock



class ServiceToolbox:
    """What tools may read of the running service; what they change is an intent (core.llm.tools.ToolContext)."""

    def __init__(self, store: ClientDataStore, retriever: Retriever, clock: Clock, *, top_k: int) -> None:
        self._store = store
        self.retriever = retriever
        self._clock = clock
        self._top_k = top_k

    async def search_knowledge(self, client: str, query: str) -> list[Passage]:
        return await self.retriever.search(client, query, self._top_k)

    async def get_document(self, client: str, key: str) -> Any | None:
        return await self._store.get_document(client, key)

    async def put_document(self, client: str, key: str, data: Any) -> None:
        await self._store.put_document(client, key, data, self._clock.now())

    async def recent_records(self, client: str, kind: str, conversation_id: int, since: datetime) -> list[dict[str, Any]]:
        return await self._store.recent_records(client, kind, conversation_id, since)
