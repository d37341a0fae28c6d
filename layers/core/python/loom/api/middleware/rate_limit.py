"""Request rate limits: in-process token buckets.

Buckets live in one worker's memory, so with N workers a key gets up to N times its limit.
That is the intended split: on AWS, API Gateway throttling is the outer, shared layer and
these buckets only stop one caller from monopolising a warm function or a laptop server.

Four kinds of key: the credential (a hash of the bearer token or API key, never the token
itself), the client address, for ``/v1/public`` and ``/v1/auth`` the client address again
under a tighter limit, and for ``/v1/hooks/{trigger_id}`` the trigger (a webhook sender
such as GitHub posts from a few addresses for many customers, so one trigger's flood must
not use up another's allowance). The client address is the socket peer unless
``trusted_proxies`` says how many proxies in front of Loom append to X-Forwarded-For, so a
forged X-Forwarded-For changes nothing by default.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from loom.api.middleware._asgi import error_response, route_path

# A full bucket holds a minute's worth of requests and refills over a minute.
_PERIOD_SECONDS = 60.0
_PUBLIC_PREFIXES = ("/v1/public/", "/v1/auth/")
_HOOKS_PREFIX = "/v1/hooks/"


class TokenBuckets:
    """Continuously refilled buckets, one per key, in bounded memory.

    A bucket untouched for a whole period is full again, so dropping it loses nothing;
    buckets are kept in least-recently-used order and dropped from the front once idle, or
    once there are more than ``max_keys`` (then the least recently used goes first).
    """

    def __init__(self, per_minute: int, *, max_keys: int = 50_000) -> None:
        self.per_minute = per_minute
        self.capacity = float(per_minute)
        self.rate = per_minute / _PERIOD_SECONDS
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        state = self._buckets.get(key)
        if state is None:
            return self.capacity
        tokens, updated = state
        return min(self.capacity, tokens + (now - updated) * self.rate)

    def wait_seconds(self, key: str, now: float) -> float:
        """0 when a request may pass now, else how long until one token is back."""
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def take(self, key: str, now: float) -> None:
        self._buckets[key] = (self._tokens(key, now) - 1.0, now)
        self._buckets.move_to_end(key)
        self._evict(now)

    def _evict(self, now: float) -> None:
        while self._buckets:
            _, updated = next(iter(self._buckets.values()))
            idle = now - updated >= _PERIOD_SECONDS
            if not idle and len(self._buckets) <= self.max_keys:
                return
            self._buckets.popitem(last=False)


@dataclass(frozen=True)
class _Check:
    buckets: TokenBuckets
    key: str
    what: str


def client_address(scope: Scope, trusted_proxies: int) -> str:
    """The socket peer, or the X-Forwarded-For entry ``trusted_proxies`` hops from the right."""
    peer = scope.get("client")
    address = peer[0] if peer else "unknown"
    if trusted_proxies == 0:
        return address
    entries = [
        entry.strip()
        for value in Headers(scope=scope).getlist("x-forwarded-for")
        for entry in value.split(",")
        if entry.strip()
    ]
    if not entries:
        return address
    # Fewer entries than proxies: every entry was written by a trusted proxy, and the
    # leftmost is the address the outermost one saw.
    return entries[-min(trusted_proxies, len(entries))]


def credential_key(scope: Scope) -> str | None:
    headers = Headers(scope=scope)
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        value = token.strip() if scheme.lower() == "bearer" else authorization
    else:
        value = headers.get("x-api-key", "")
    if not value:
        return None
    return hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        per_credential: int,
        per_address: int,
        public_per_address: int,
        trusted_proxies: int,
        per_trigger: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.credentials = TokenBuckets(per_credential)
        self.addresses = TokenBuckets(per_address)
        self.public = TokenBuckets(public_per_address)
        self.triggers = TokenBuckets(per_trigger)
        self.trusted_proxies = trusted_proxies
        self.clock = clock

    def _checks(self, scope: Scope) -> list[_Check]:
        address = client_address(scope, self.trusted_proxies)
        checks = [_Check(self.addresses, address, "this address")]
        credential = credential_key(scope)
        if credential is not None:
            checks.append(_Check(self.credentials, credential, "this credential"))
        path = route_path(scope)
        if path.startswith(_PUBLIC_PREFIXES) or path in ("/v1/public", "/v1/auth"):
            checks.append(_Check(self.public, address, "this address on public routes"))
        elif path.startswith(_HOOKS_PREFIX):
            trigger = path[len(_HOOKS_PREFIX) :].split("/", 1)[0][:64]
            checks.append(_Check(self.triggers, trigger, "this trigger"))
        return checks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        now = self.clock()
        checks = self._checks(scope)
        waits = [(check.buckets.wait_seconds(check.key, now), check) for check in checks]
        wait, limiting = max(waits, key=lambda pair: pair[0])
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            response = error_response(
                429,
                "rate_limited",
                f"Too many requests from {limiting.what}: the limit is "
                f"{limiting.buckets.per_minute} per minute.",
                f"Wait {retry_after} s (Retry-After), then try again.",
                headers={"Retry-After": str(retry_after)},
            )
            await response(scope, receive, send)
            return
        for check in checks:
            check.buckets.take(check.key, now)
        await self.app(scope, receive, send)
