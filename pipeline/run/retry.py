"""What a shard may be retried for, and how long to wait first.

Only failures that can go away are retried: the worker died or stopped answering (the scheduler sees
those itself), a shard timed out, or the shard's task raised a transient storage error (a connection
refused or reset, a timeout, an object store's throttling or 5xx answer). Any other exception (raised by
the sampler, the network, the encoder, or a storage error that will not change: permission denied,
no space, a missing folder) fails the job at its first occurrence. Retries wait `backoff_s`: exponential
in the attempt, with full jitter, capped.
"""

from __future__ import annotations

import random

# Transient errors of object-store clients, by class name (botocore, aiobotocore, aiohttp, google-auth):
# matched by name so that no client package has to be imported to classify an error.
TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ServerTimeoutError",
    "IncompleteRead", "FSTimeoutError", "TransportError", "ServiceUnavailable", "TooManyRequests",
})
TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"})
MAX_BACKOFF_S = 60.0


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is a storage or network failure that may not recur."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if any(cls.__name__ in TRANSIENT_NAMES for cls in type(exc).__mro__):
            return True
        code = getattr(exc, "response", None)
        if isinstance(code, dict) and str(code.get("Error", {}).get("Code")) in TRANSIENT_CODES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def backoff_s(attempt: int, base_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): uniform in [0.5, 1] x base_s x 2**(attempt-1),
    at most MAX_BACKOFF_S."""
    rng = rng or random
    return min(MAX_BACKOFF_S, base_s * 2 ** (attempt - 1)) * rng.uniform(0.5, 1.0)
