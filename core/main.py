"""Entry point for servers: `uvicorn core.main:app` or gunicorn with uvicorn workers (see Procfile)."""

from core.app import create_app

app = create_app()

__all__ = ["app", "create_app"]
