"""Tools of the demo client (knowledge search and hand-over come from core.llm.builtin_tools)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
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


def next_opening(opening_hours: dict[int, str], moment: datetime) -> datetime | None:
    """The next local moment after `moment` at which the shop opens (within a week), or None if it never does."""
    for offset in range(8):
        day = (moment + timedelta(days=offset)).date()
        hours = opening_hours.get(day.weekday())
        if not hours:
            continue
        opening = datetime.combine(day, _parse(hours)[0], tzinfo=moment.tzinfo)
        if opening > moment:
            return opening
    return None


def _when(opening: datetime, local: datetime) -> str:
    days = (opening.date() - local.date()).days
    label = "hoy" if days == 0 else "mañana" if days == 1 else f"el {DAYS[opening.weekday()]}"
    return f"{label} a las {opening:%H:%M}"


async def business_hours(*, ctx: ToolContext) -> str:
    """Tell whether the shop is open right now (in its own time zone), when it closes or opens next, and its
    opening hours for each day of the week."""
    settings = ctx.settings
    local = ctx.now.astimezone(ZoneInfo(settings.timezone))
    hours: dict[int, str] = settings.opening_hours
    if is_open(hours, local):
        state = f"abierto, hasta las {_parse(hours[local.weekday()])[1]:%H:%M}"
    else:
        opening = next_opening(hours, local)
        state = (f"cerrado; abre {_when(opening, local)}" if opening
                 else "cerrado y no tiene horarios de apertura cargados")
    week = "; ".join(f"{DAYS[day]}: {hours.get(day) or 'cerrado'}" for day in range(7))
    now = f"{DAYS[local.weekday()]} {local:%H:%M}, {settings.timezone}"
    return f"Ahora ({now}) el local está {state}. Horarios: {week}."
