"""Erasing one person: their conversations with one client, every row about them and their archived files."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.errors import AppError
from core.storage.base import RetentionStore
from core.storage.media import MediaArchive

log = logging.getLogger("core.erasure")


class MediaNotRemoved(AppError):
    """The archive refused to delete the person's files; nothing was erased from the store, so it can be retried."""

    status_code = 502


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What was removed; the user key is the caller's, never logged."""

    conversations: int
    messages: int
    status_reports: int
    records: int
    effects: int
    media_files: int
    anonymised: dict[str, int]


async def erase_contact(store: RetentionStore, archive: MediaArchive, client: str, user_key: str) -> ErasureReport | None:
    """Remove everything the client keeps about one person (another client's copy stays); None if none was kept.

    Files go first: if the archive fails, the rows that find them are still there to try again. Files archived
    while the rows were being deleted (a turn reading a new image) are removed after."""
    found = await store.contact_data(client, user_key)
    if not found.conversation_ids:
        return None
    conversations = ",".join(map(str, found.conversation_ids))
    try:
        files = await _remove_files(archive, client, found.conversation_ids, found.media_paths)
    except Exception as error:  # the archive's own failure, whatever its client raises
        log.warning("contact.erase_media_failed", extra={"client": client, "archive": archive.name,
                                                         "conversations": conversations, "error": type(error).__name__})
        raise MediaNotRemoved(f"the {archive.name} media archive did not delete the person's files "
                              f"({type(error).__name__}); nothing was erased, try again") from error
    erased = await store.erase_contact(client, user_key)
    try:
        late = tuple(path for path in erased.media_paths if path not in found.media_paths)
        files += await _remove_files(archive, client, erased.conversation_ids, late)
    except Exception as error:
        # The rows are gone, so no later run would find these files: say where they are.
        log.error("contact.erase_late_media_failed", extra={
            "client": client, "archive": archive.name, "error": type(error).__name__,
            "conversations": ",".join(map(str, erased.conversation_ids))})
    report = ErasureReport(conversations=erased.conversations, messages=erased.messages,
                           status_reports=erased.status_reports, records=erased.records, effects=erased.effects,
                           media_files=files, anonymised=erased.anonymised)
    # The conversation ids, not the user key: no phone number in the logs.
    log.info("contact.erased", extra={"client": client, "conversations": ",".join(map(str, erased.conversation_ids)),
                                      "messages": report.messages, "media_files": report.media_files,
                                      "records": report.records})
    return report


async def _remove_files(archive: MediaArchive, client: str, conversation_ids: tuple[int, ...],
                        paths: tuple[str, ...]) -> int:
    # By path too: a file archived under an older layout, or in another bucket, is found from its message.
    removed = await archive.remove(paths) if paths else 0
    for conversation_id in conversation_ids:
        removed += await archive.remove_conversation(client, conversation_id)
    return removed
