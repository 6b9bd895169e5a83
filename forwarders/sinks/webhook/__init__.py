"""Webhooks as the Standard Webhooks spec defines them (https://www.standardwebhooks.com):
signing (pure), the HTTP client (with the destination guard) and the sink."""
