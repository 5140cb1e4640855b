"""The store's side of coexistence: messages staff sent from the WhatsApp Business app, kept in the timeline."""

from __future__ import annotations

from datetime import datetime

from core.storage.sql import Database, Json, Tx
from core.webhook.echoes import EchoMessage


class EchoSQL:
    """EchoStore as SQL; mixed into SQLStore, whose `database` it uses."""

    database: Database

    async def record_echo(self, client: str, echo: EchoMessage, now: datetime) -> int | None:
        async def write(tx: Tx) -> int | None:
            conversation_id = await tx.fetchval(
                """INSERT INTO conversations (client, phone_number_id, user_key, wa_id, user_id, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $6)
                   ON CONFLICT (client, phone_number_id, user_key) DO UPDATE SET
                       wa_id = COALESCE(conversations.wa_id, excluded.wa_id),
                       user_id = COALESCE(conversations.user_id, excluded.user_id)
                   RETURNING id""",
                client, echo.phone_number_id, echo.user_key, echo.wa_id, echo.user_id, now)
            # Handled as it is stored (processed_at): it is part of the history, never a turn for the bot.
            inserted = await tx.fetchval(
                """INSERT INTO messages (conversation_id, wamid, direction, role, type, text, payload, status,
                                         wa_timestamp, processed_at, created_at)
                   VALUES ($1, $2, 'out', 'operator', $3, $4, $5, 'sent', $6, $7, $7)
                   ON CONFLICT (wamid) DO NOTHING RETURNING id""",
                conversation_id, echo.wamid, echo.type, echo.text, Json(echo.payload), echo.wa_timestamp, now)
            if inserted is None:
                return None
            await tx.execute("UPDATE conversations SET updated_at = $1 WHERE id = $2", now, conversation_id)
            return int(conversation_id)

        # Grouped with other acknowledgements, in the order of the conversation rows they lock (as record_inbound).
        return await self.database.write(write, order=f"c\x00{client}\x00{echo.phone_number_id}\x00{echo.user_key}")
