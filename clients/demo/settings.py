"""The demo client's settings: the shared ones (DEMO_ prefix) plus its own."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator

from core.clients import ClientSettings


class DemoSettings(ClientSettings):
    timezone: str = "America/Argentina/Buenos_Aires"
    # Opening hours per weekday (0 = Monday), "HH:MM-HH:MM"; a missing day is closed.
    opening_hours: dict[int, str] = {0: "09:00-18:00", 1: "09:00-18:00", 2: "09:00-18:00", 3: "09:00-18:00",
                                     4: "09:00-18:00", 5: "10:00-13:00"}

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value
