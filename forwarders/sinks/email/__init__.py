"""E-mail over SMTP: one message per change, or a digest per interval."""
