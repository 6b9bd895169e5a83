"""What a peer's answer means for the work that asked it (pure)."""

#: HTTP statuses a server answers when it may take the same request later.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
