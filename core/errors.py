"""Errors raised on purpose, each with the answer it deserves."""


class ConfigError(Exception):
    """Bad configuration found at startup; the message names the variable."""


class AppError(Exception):
    """Raised on purpose inside a request; the handler answers `status_code` with the message."""

    status_code = 500

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(AppError):
    status_code = 404


class Unauthorized(AppError):
    status_code = 401
