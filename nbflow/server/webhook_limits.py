"""Wrong webhook secrets, limited per (slug, client address) and per slug, in the server's memory.

- Every call counts as a wrong try until its secret proves right (so parallel guesses count
  too); an unknown slug counts like a known one, so the answers do not tell them apart.
- After ADDRESS_LIMIT wrong tries within WINDOW seconds, that address gets 429 for that slug,
  with the right secret too, until the oldest try leaves the window (Retry-After says when):
  a blocked caller can neither keep guessing nor learn that a guess was right.
- After SLUG_LIMIT wrong tries within WINDOW from all addresses together, the slug answers 429
  to every address that has not sent its right secret within KNOWN_FOR; addresses that have
  keep working, so an attacker with many addresses cannot lock the real sender out.
- IPv6 addresses count by their /64 network (one machine commonly holds a whole /64).
- A restart forgets everything; each table keeps at most MAX_KEYS entries (the oldest go).
"""

from __future__ import annotations

import collections
import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from nbflow.server.errors import too_many

WINDOW = 60.0
ADDRESS_LIMIT = 10
SLUG_LIMIT = 100
KNOWN_FOR = 24 * 3600.0
MAX_KEYS = 10_000


@dataclass(frozen=True)
class Attempt:
    """A call being checked: its provisional wrong try, taken back by `succeeded`."""

    slug: str
    address: str
    at: float


class WebhookLimiter:
    """Counts wrong webhook secrets; thread-safe (handlers may run in a thread pool)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        #: (slug, address) -> times of its latest wrong tries (at most ADDRESS_LIMIT kept).
        self._by_address: collections.OrderedDict[tuple[str, str], collections.deque[float]] = \
            collections.OrderedDict()
        #: slug -> times of its latest wrong tries from any address (at most SLUG_LIMIT kept).
        self._by_slug: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        #: (slug, address) -> when it last sent the right secret.
        self._known: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()

    def attempt(self, slug: str, address: str) -> Attempt:
        """Admit a call (counted as wrong until `succeeded`), or raise a 429 ApiError with Retry-After."""
        address = _network(address)
        with self._lock:
            now = self._clock()
            mine = self._recent(self._by_address, (slug, address), ADDRESS_LIMIT, now)
            if len(mine) >= ADDRESS_LIMIT:
                raise too_many(f"Too many wrong secrets for this webhook from {address}: {ADDRESS_LIMIT} in "
                               f"{WINDOW:g} s. Wait and send the right one in the X-Nbflow-Webhook-Secret "
                               "header.", math.ceil(mine[0] + WINDOW - now))
            everyone = self._recent(self._by_slug, slug, SLUG_LIMIT, now)
            if len(everyone) >= SLUG_LIMIT and not self._is_known(slug, address, now):
                raise too_many(f"Too many wrong secrets for this webhook: {SLUG_LIMIT} in {WINDOW:g} s from "
                               "several addresses; addresses that sent the right secret before still get "
                               "through. Wait and try again.", math.ceil(everyone[0] + WINDOW - now))
            mine.append(now)
            everyone.append(now)
            return Attempt(slug, address, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The call had the right secret: take its try back and remember its address."""
        with self._lock:
            for table, key in ((self._by_address, (attempt.slug, attempt.address)), (self._by_slug, attempt.slug)):
                tries = table.get(key)
                if tries is not None and attempt.at in tries:
                    tries.remove(attempt.at)
            self._known[(attempt.slug, attempt.address)] = self._clock()
            self._known.move_to_end((attempt.slug, attempt.address))
            while len(self._known) > MAX_KEYS:
                self._known.popitem(last=False)

    def _recent(self, table: collections.OrderedDict, key: object, limit: int, now: float) -> collections.deque:
        """The key's tries within the window (created if new; the table trimmed to MAX_KEYS)."""
        tries = table.get(key)
        if tries is None:
            tries = table[key] = collections.deque(maxlen=limit)
            while len(table) > MAX_KEYS:
                table.popitem(last=False)
        table.move_to_end(key)
        while tries and tries[0] <= now - WINDOW:
            tries.popleft()
        return tries

    def _is_known(self, slug: str, address: str, now: float) -> bool:
        last = self._known.get((slug, address))
        return last is not None and now - last < KNOWN_FOR


def _network(address: str) -> str:
    """The address a caller is counted by: IPv4 as is, IPv6 as its /64 network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


#: the server's limiter (one per process).
limiter = WebhookLimiter()
