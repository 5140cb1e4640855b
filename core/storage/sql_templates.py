"""The store's message templates: each client's templates as the last sync (and template webhooks) left them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.storage.sql import Database, Dialect, Json, Row, Tx
from core.whatsapp.templates import APPROVED, Template


class TemplateSQL:
    """TemplateStore as SQL; mixed into SQLStore, whose `database` and dialect it uses."""

    database: Database
    _d: Dialect

    async def replace_templates(self, client: str, templates: Sequence[Template], now: datetime) -> None:
        async def write(tx: Tx) -> None:
            keep = {(t.name, t.language) for t in templates}
            stored = await tx.fetch("SELECT name, language FROM templates WHERE client = $1", client)
            gone = [(client, row["name"], row["language"]) for row in stored if (row["name"], row["language"]) not in keep]
            if gone:
                await tx.executemany("DELETE FROM templates WHERE client = $1 AND name = $2 AND language = $3", gone)
            # A quality score only the quality webhook told us is kept when the list gives none.
            await tx.executemany(
                """INSERT INTO templates (client, name, language, template_id, category, status, quality,
                                          parameter_format, components, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (client, name, language) DO UPDATE SET
                       template_id = excluded.template_id, category = excluded.category, status = excluded.status,
                       quality = COALESCE(excluded.quality, templates.quality),
                       parameter_format = excluded.parameter_format, components = excluded.components,
                       updated_at = excluded.updated_at""",
                [(client, t.name, t.language, t.template_id, t.category, t.status, t.quality, t.parameter_format,
                  Json(t.components), now) for t in templates])

        await self.database.write(write)

    async def update_template(self, client: str, name: str, language: str, now: datetime, *,
                              status: str | None = None, quality: str | None = None,
                              category: str | None = None) -> bool:
        touched = await self.database.write(lambda tx: tx.execute(
            """UPDATE templates SET status = COALESCE($4, status), quality = COALESCE($5, quality),
                   category = COALESCE($6, category), updated_at = $7
               WHERE client = $1 AND name = $2 AND language = $3""",
            client, name, language, status, quality, category, now))
        return bool(touched)

    async def list_templates(self, client: str) -> list[Template]:
        rows = await self.database.read(lambda tx: tx.fetch(
            "SELECT * FROM templates WHERE client = $1 ORDER BY name, language", client))
        return [self._template(row) for row in rows]

    async def get_template(self, client: str, name: str, language: str) -> Template | None:
        row = await self.database.read(lambda tx: tx.fetchrow(
            "SELECT * FROM templates WHERE client = $1 AND name = $2 AND language = $3", client, name, language))
        return self._template(row) if row is not None else None

    async def approved_templates(self, client: str) -> list[str]:
        rows = await self.database.read(lambda tx: tx.fetch(
            "SELECT name, language FROM templates WHERE client = $1 AND status = $2 ORDER BY name, language",
            client, APPROVED))
        return [f"{row['name']} ({row['language']})" for row in rows]

    def _template(self, row: Row) -> Template:
        return Template(name=row["name"], language=row["language"], category=row["category"], status=row["status"],
                        components=self._d.json(row["components"]) or [], parameter_format=row["parameter_format"],
                        template_id=row["template_id"], quality=row["quality"], updated_at=self._d.time(row["updated_at"]))
