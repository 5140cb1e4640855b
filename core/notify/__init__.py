"""Notifications to the people who run a client (email over SMTP)."""

from core.notify.email import Email, EmailSettings, SmtpConfig, SmtpMailer

__all__ = ["Email", "EmailSettings", "SmtpConfig", "SmtpMailer"]
