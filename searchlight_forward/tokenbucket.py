"""A token bucket (pure: the caller says what time it is).

``burst`` tokens at once, refilled at ``rate`` per second. ``allow`` answers "may
one go now?" (the WebSocket server's frame rate per connection); ``take`` books the
next token even when none is left and says how long until it is really there, so
that callers that wait that long share the rate fairly (a sink's pacing:
``forwarders.sinks.ratelimit``).
"""
from __future__ import annotations


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None):
        self.rate = rate                       # tokens per second; 0: unlimited
        self.burst = max(1.0, float(burst if burst is not None else rate))
        self.tokens = self.burst
        self.last: float | None = None

    def _refill(self, now: float) -> None:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def allow(self, now: float) -> bool:
        """Take a token if one is there now; False (and nothing taken) if not."""
        if self.rate <= 0:
            return True
        self._refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def take(self, now: float) -> float:
        """Take the next token; the seconds until it is there (0.0: now)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        self.tokens -= 1.0
        return -self.tokens / self.rate if self.tokens < 0 else 0.0
