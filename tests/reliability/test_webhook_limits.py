"""Wrong webhook secrets: limited per (slug, address) with a higher cap per slug, 429 with Retry-After,
and unknown slugs answered like known ones (same status, body and code path)."""

from __future__ import annotations

import http.client
import json
import secrets
from urllib.parse import urlsplit

import pytest

from deployment_helpers import deploy, write_notebook
from live_server import start_server, stop_server
from nbflow.server import webhook_limits
from nbflow.server.errors import ApiError
from nbflow.server.webhook_limits import ADDRESS_LIMIT, SLUG_LIMIT, WINDOW, WebhookLimiter

pytestmark = pytest.mark.timeout(180)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wrong_tries(limiter: WebhookLimiter, slug: str, address: str, count: int) -> None:
    for _ in range(count):
        limiter.attempt(slug, address)  # never succeeded(): a wrong secret


def test_an_address_is_blocked_after_ten_wrong_tries_until_the_window_passes() -> None:
    clock = Clock()
    limiter = WebhookLimiter(clock)
    wrong_tries(limiter, "hook", "10.0.0.1", ADDRESS_LIMIT)
    with pytest.raises(ApiError) as blocked:
        limiter.attempt("hook", "10.0.0.1")  # the right secret would not even be looked at
    assert blocked.value.status == 429 and blocked.value.headers["Retry-After"] == str(int(WINDOW))
    clock.now += 20
    with pytest.raises(ApiError) as still:
        limiter.attempt("hook", "10.0.0.1")
    assert still.value.headers["Retry-After"] == "40"
    limiter.attempt("hook", "10.0.0.2")  # another address, and another slug, are not affected
    limiter.attempt("other", "10.0.0.1")
    clock.now += 40.5
    limiter.succeeded(limiter.attempt("hook", "10.0.0.1"))  # the window passed


def test_right_secrets_do_not_count_and_parallel_guesses_do() -> None:
    limiter = WebhookLimiter(Clock())
    for _ in range(3 * ADDRESS_LIMIT):
        limiter.succeeded(limiter.attempt("hook", "10.0.0.1"))
    pending = [limiter.attempt("hook", "10.0.0.3") for _ in range(ADDRESS_LIMIT)]  # in flight at once
    with pytest.raises(ApiError):
        limiter.attempt("hook", "10.0.0.3")
    assert len(pending) == ADDRESS_LIMIT


def test_many_addresses_block_the_slug_for_new_addresses_but_not_the_real_sender() -> None:
    clock = Clock()
    limiter = WebhookLimiter(clock)
    limiter.succeeded(limiter.attempt("hook", "192.0.2.7"))  # the real sender, seen before the attack
    for i in range(SLUG_LIMIT // ADDRESS_LIMIT):
        wrong_tries(limiter, "hook", f"10.0.1.{i}", ADDRESS_LIMIT)
    with pytest.raises(ApiError) as blocked:
        limiter.attempt("hook", "10.0.2.1")  # a fresh attacker address
    assert blocked.value.status == 429 and "several addresses" in str(blocked.value)
    limiter.succeeded(limiter.attempt("hook", "192.0.2.7"))  # the real sender still gets through
    limiter.attempt("other-hook", "10.0.2.1")  # the cap is per slug
    clock.now += WINDOW + 1
    limiter.attempt("hook", "10.0.2.1")


def test_ipv6_addresses_count_by_their_64_network_and_tables_stay_bounded(monkeypatch) -> None:
    limiter = WebhookLimiter(Clock())
    for i in range(ADDRESS_LIMIT):
        limiter.attempt("hook", f"2001:db8:1:2::{i + 1:x}")
    with pytest.raises(ApiError):
        limiter.attempt("hook", "2001:db8:1:2:ffff::1")
    limiter.attempt("hook", "2001:db8:1:3::1")  # another /64
    limiter.attempt("hook", "::ffff:10.0.0.9")  # IPv4-mapped: the IPv4 address
    monkeypatch.setattr(webhook_limits, "MAX_KEYS", 50)
    for i in range(200):
        limiter.attempt(f"slug-{i}", "10.9.9.9")
    assert len(limiter._by_address) <= 50 and len(limiter._by_slug) <= 50


# -- against a live server ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("webhook-home")
    server = start_server(home, home / "server.log", secrets.token_hex(16))
    notebook = write_notebook(home / "hooked.ipynb", "n = 1", "print(n)")
    created = deploy(server, {"name": "hooked", "notebook": str(notebook), "work_pool": "nobody",
                              "webhook": {"slug": "new-data"}})
    try:
        yield server, created["webhook"]["secret"]
    finally:
        stop_server(server)


def call(server, slug: str, secret: str | None, source: str, body: bytes = b'{"parameters": {"n": 2}}'
         ) -> tuple[int, dict[str, str], dict]:
    """POST webhooks/<slug> from the loopback address `source` (Linux routes all of 127/8 locally)."""
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=(source, 0))
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Nbflow-Webhook-Secret"] = secret
    try:
        connection.request("POST", f"/nbflow/api/webhooks/{slug}", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())
    finally:
        connection.close()


def test_wrong_secrets_get_a_429_per_address_while_the_real_sender_keeps_working(hooked) -> None:
    server, secret = hooked
    assert call(server, "new-data", secret, "127.0.0.2")[0] == 201
    answers = [call(server, "new-data", guess, "127.0.0.3")
               for guess in [None, ""] + [secrets.token_urlsafe(24) for _ in range(ADDRESS_LIMIT - 2)]]
    assert [a[0] for a in answers] == [403] * ADDRESS_LIMIT
    status, headers, answer = call(server, "new-data", secrets.token_urlsafe(24), "127.0.0.3")
    assert status == 429 and 1 <= int(headers["retry-after"]) <= WINDOW and "Retry" not in answer["message"]
    assert call(server, "new-data", secret, "127.0.0.3")[0] == 429  # the right secret waits too
    status, _, run = call(server, "new-data", secret, "127.0.0.2")  # another address: unaffected
    assert status == 201 and run["parameters"] == {"n": 2}


def test_unknown_and_known_slugs_get_the_same_answers(hooked) -> None:
    server, _ = hooked
    known = [call(server, "new-data", "wrong-" + "x" * 20, "127.0.0.4") for _ in range(ADDRESS_LIMIT + 1)]
    unknown = [call(server, "no-such-hook", "wrong-" + "x" * 20, "127.0.0.4") for _ in range(ADDRESS_LIMIT + 1)]
    assert [(s, b) for s, _, b in known] == [(s, b) for s, _, b in unknown]
    assert [s for s, _, _ in known] == [403] * ADDRESS_LIMIT + [429]


def test_a_bad_body_with_the_right_secret_is_a_400_and_without_it_a_403(hooked) -> None:
    server, secret = hooked
    deep = b"[" * 5000 + b"]" * 5000
    status, _, answer = call(server, "new-data", secret, "127.0.0.6", deep)
    assert status == 400 and "nested" in answer["message"]
    assert call(server, "new-data", None, "127.0.0.6", deep)[0] == 403  # not parsed for a caller without it
    status, _, answer = call(server, "new-data", secret, "127.0.0.6", b'{"parameters": {"n": 1e999}}')
    assert status == 422 and answer["field"] == "parameters.n"


def test_unknown_and_known_slugs_take_the_same_code_path(tmp_path, monkeypatch) -> None:
    """One look-up, then hmac.compare_digest of equal-length digests, for both (timing tells nothing)."""
    import hmac

    from nbflow.deployments import service
    from nbflow.deployments.service import WebhookAuthError
    from nbflow.store.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path / "store.duckdb", lock_timeout=10)
    notebook = write_notebook(tmp_path / "n.ipynb", "n = 1", "print(n)")
    service.create_deployment(store, {"name": "d", "notebook": str(notebook), "work_pool": "nobody",
                                      "webhook": {"slug": "known", "secret": "s" * 20}})
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((len(a), len(b))) or real(a, b))
    for slug, secret in [("known", "wrong-secret-1234"), ("unknown", "wrong-secret-1234"), ("known", None),
                         ("unknown", None), ("known", "s" * 200)]:
        with pytest.raises(WebhookAuthError):
            service.webhook_deployment(store, slug, secret)
    assert compared == [(32, 32)] * 5
    assert service.webhook_deployment(store, "known", "s" * 20)["name"] == "d"
