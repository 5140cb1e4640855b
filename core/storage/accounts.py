"""What the store keeps of the console's accounts, as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ConsoleRole = Literal["admin", "operator", "viewer"]
CONSOLE_ROLES: tuple[ConsoleRole, ...] = ("admin", "operator", "viewer")
LoginScope = Literal["email", "ip"]


@dataclass(frozen=True)
class ConsoleUser:
    """A console account: an admin (every client, `client` None) or one client's operator or viewer."""

    id: int
    email: str
    password_hash: str
    role: ConsoleRole
    client: str | None
    disabled: bool
    created_at: datetime

    def sees(self, client: str) -> bool:
        """Whether this account may open `client`'s conversations."""
        return self.role == "admin" or self.client == client

    @property
    def can_act(self) -> bool:
        """Operators and admins change conversations; viewers only read."""
        return self.role in ("admin", "operator")
