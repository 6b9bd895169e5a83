"""The one token bucket: frames per connection and a sink's pacing (pure)."""
from searchlight_forward.tokenbucket import TokenBucket


def test_allow_lets_a_burst_through_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(10.4) is False          # 0.8 of a token
    assert bucket.allow(10.5) is True           # 1.0 after half a second at 2/s
    assert bucket.allow(100.0) and bucket.tokens == 2.0    # refilled to the burst only


def test_take_books_the_next_token_and_says_when_it_is_there():
    bucket = TokenBucket(rate=4.0)              # burst = rate
    assert [bucket.take(0.0) for _ in range(4)] == [0.0] * 4
    assert [bucket.take(0.0) for _ in range(3)] == [0.25, 0.5, 0.75]   # callers queue
    assert bucket.take(1.0) == 0.0              # 4 tokens came, 3 were booked


def test_a_rate_of_zero_is_unlimited():
    bucket = TokenBucket(rate=0)
    assert all(bucket.allow(0.0) for _ in range(1000))
    assert bucket.take(0.0) == 0.0
