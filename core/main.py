"""Entry point for servers: `uvicorn core.main:app` or gunicorn with uvicorn workers (see Procfile)."""

import sys

from core.app import create_app
from core.errors import ConfigError

try:
    app = create_app(server=True)
except ConfigError as error:
    # One clear line naming the variable, instead of a traceback through the server's import machinery.
    print(f"configuration error: {error}", file=sys.stderr)
    raise SystemExit(3) from None

__all__ = ["app", "create_app"]
