"""Tools of the demo client."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from core.llm.tools import ToolContext

DAYS = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]


def _parse(hours: str) -> tuple[time, time]:
    start, end = hours.split("-")
    return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())


def is_open(opening_hours: dict[int, str], moment: datetime) -> bool:
    """Whether the shop is open at a local moment."""
    hours = opening_hours.get(moment.weekday())
    if not hours:
        return False
    start, end = _parse(hours)
    return start <= moment.time() < end


async def business_hours(*, ctx: ToolContext) -> str:
    """Tell whether the shop is open right now and list its opening hours for each day of the week."""
    settings = ctx.settings
    local = ctx.now.astimezone(ZoneInfo(settings.timezone))
    state = "abierto" if is_open(settings.opening_hours, local) else "cerrado"
    week = "; ".join(f"{DAYS[day]}: {settings.opening_hours.get(day) or 'cerrado'}" for day in range(7))
    return f"Ahora ({DAYS[local.weekday()]} {local:%H:%M}, {settings.timezone}) el local está {state}. Horarios: {week}."
