"""Graph API failures, classified by Meta's error code (never by its wording)."""

from __future__ import annotations

from typing import Any

import httpx

# Codes worth another try after a pause (WHATSAPP.md error table).
TRANSIENT_CODES = frozenset({4, 80007, 130429, 131000, 131016, 131056, 131057})


class WhatsAppError(Exception):
    """A send or read that Meta refused or that never reached Meta."""

    def __init__(self, message: str, *, status_code: int | None = None, code: int | None = None,
                 title: str | None = None, fbtrace_id: str | None = None) -> None:
        self.status_code = status_code
        self.code = code
        self.title = title
        self.fbtrace_id = fbtrace_id
        super().__init__(message)

    @property
    def is_transient(self) -> bool:
        if self.code is not None:
            return self.code in TRANSIENT_CODES
        return self.status_code is None or self.status_code >= 500

    def as_record(self) -> dict[str, Any]:
        """The error as stored on the message it concerns."""
        return {"code": self.code, "title": self.title, "status_code": self.status_code, "message": str(self)}

    @classmethod
    def from_response(cls, response: httpx.Response) -> WhatsAppError:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        title = error.get("error_user_title") or error.get("type")
        message = error.get("message") or f"HTTP {response.status_code} from the Graph API"
        return cls(message, status_code=response.status_code, code=code, title=title, fbtrace_id=error.get("fbtrace_id"))
