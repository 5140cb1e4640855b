"""Shared code of the WhatsApp bot server; names no client."""
