"""The demo client's settings: the shared ones (DEMO_ prefix) plus its own."""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator

from core.clients import ClientSettings


class DemoSettings(ClientSettings):
    timezone: str = "America/Argentina/Buenos_Aires"
    # Opening hours per weekday (0 = Monday), "HH:MM-HH:MM"; a missing day is closed.
    opening_hours: dict[int, str] = {0: "09:00-18:00", 1: "09:00-18:00", 2: "09:00-18:00", 3: "09:00-18:00",
                                     4: "09:00-18:00", 5: "10:00-13:00"}

    @field_validator("opening_hours")
    @classmethod
    def _valid_hours(cls, value: dict[int, str]) -> dict[int, str]:
        for day, hours in value.items():
            if not 0 <= day <= 6:
                raise ValueError(f"weekday {day} is not 0 (Monday) to 6 (Sunday)")
            start, dash, end = hours.partition("-")
            try:
                if not dash or time.fromisoformat(start.strip()) >= time.fromisoformat(end.strip()):
                    raise ValueError
            except ValueError:
                raise ValueError(f"{hours!r} for weekday {day} is not HH:MM-HH:MM with the start first") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value
