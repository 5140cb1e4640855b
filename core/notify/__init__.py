"""Notifications to the people who run a client (email over SMTP)."""

from core.notify.email import Email, EmailNotifier, EmailSettings, RetryPolicy, SmtpConfig

__all__ = ["Email", "EmailNotifier", "EmailSettings", "RetryPolicy", "SmtpConfig"]
