"""Abuse limits in the real Envoy (two workers): per caller and policy, shared by every worker
through proxy-wasm shared data, 429 with Retry-After in the API's shape, and the warning mark
before anything is refused."""
import time
import urllib.request
import uuid

import openai
import pytest

from harness import client, mint_token, tls_context, wait_for

import httpx

# 20 requests on 20 connections: Envoy's two workers both serve some (all on one worker has odds
# of 2 in 2^20).
LIMITS = '{"limits": {"requests_per_minute": 20, "warn_at": 50}}'


@pytest.fixture(scope="module")
def limited(make_envoy):
    return make_envoy(LIMITS)


def marker() -> str:
    return "lim-" + uuid.uuid4().hex[:12]


def ask(envoy, token, m):
    """One chat completion on a connection of its own (so Envoy may give it to either worker)."""
    with client(token=token) as c:
        return c.post(f"{envoy.base}/v1/chat/completions?t={m}",
                      json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def worker_connections(envoy):
    """Connections each worker of the TLS listener accepted so far."""
    out = {}
    for line in envoy.stats().splitlines():
        name, _, value = line.partition(": ")
        if f"_{envoy.https_port}.worker_" in name and name.endswith(".downstream_cx_total"):
            out[name] = int(value)
    return out


def test_the_allowance_holds_across_connections_and_workers_then_429_with_retry_after(limited, standin):
    token = mint_token("limits-" + uuid.uuid4().hex[:8])
    before = worker_connections(limited)
    start = time.monotonic()
    served, refused = [], None
    while refused is None and len(served) < 40:
        m = marker()
        r = ask(limited, token, m)
        if r.status_code == 429:
            refused = (m, r)
        else:
            assert r.status_code == 200, r.text
            served.append(m)
    elapsed = time.monotonic() - start
    # The allowance is 20 at once, plus what refills while the test runs (one every 3 s).
    assert 20 <= len(served) <= 20 + int(elapsed / 3) + 1, (len(served), elapsed)
    after = worker_connections(limited)
    assert len(after) == 2 and all(after[w] > before.get(w, 0) for w in after), (before, after)
    audits = [limited.audit_for(m) for m in served]
    assert {a["decision"] for a in audits} == {"redacted"}  # the canned answer has an e-mail address
    # Marked once fewer than half of 20 are left (from about the 11th on), before any refusal.
    marks = [a.get("warning") for a in audits]
    first = marks.index("extraction_suspected")
    assert 10 <= first <= 10 + int(elapsed / 3) + 1 and set(marks[first:]) == {"extraction_suspected"}, marks
    m, r = refused
    assert r.status_code == 429
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 3  # less than one request's refill (60/20 s) away
    assert r.json() == {"error": {"message": f"too many requests: retry in {wait} s", "type": "invalid_request_error",
                                  "param": None, "code": "rate_limited"}}
    assert r.headers["x-content-type-options"] == "nosniff"
    audit = limited.audit_for(m)
    assert (audit["decision"], audit["reason"]) == ("rate_limited", "rate_limited")
    assert standin.received(m) == []


@pytest.fixture(scope="module")
def slow(make_envoy):
    """Two requests a minute: one comes back every 30 s, far longer than the test takes."""
    return make_envoy('{"limits": {"requests_per_minute": 2}}')


def test_each_caller_has_its_own_allowance_and_the_sdk_raises_rate_limit_error(slow):
    first, second = (mint_token("caller-" + uuid.uuid4().hex[:8]) for _ in range(2))
    assert [ask(slow, first, marker()).status_code for _ in range(3)] == [200, 200, 429]
    assert ask(slow, second, marker()).status_code == 200
    m = marker()
    sdk = openai.OpenAI(base_url=f"{slow.base}/v1", api_key=first, max_retries=0, default_query={"t": m},
                        http_client=httpx.Client(verify=tls_context(), timeout=30))
    with pytest.raises(openai.RateLimitError) as e:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 429
    assert e.value.code == "rate_limited"
    assert 25 <= int(e.value.response.headers["retry-after"]) <= 30
    # Two refusals so far on this Envoy, counted under their policy.
    def rate_limited():
        with urllib.request.urlopen(f"http://127.0.0.1:{slow.admin_port}/stats/prometheus", timeout=5) as r:
            text = r.read().decode()
        return [line for line in text.splitlines() if line.startswith("inferguard_rate_limited_total")]
    wait_for(lambda: rate_limited() == ['inferguard_rate_limited_total{policy="default"} 2'], 10, "the rate-limited counter")


def test_the_verified_caller_reaches_later_filters_and_a_forged_one_never_does(envoy, standin):
    """`x-inferguard-identity` carries who Envoy verified (for Envoy's global rate limit filter);
    a client's own header of that name is replaced, not passed along."""
    m = marker()
    with client(headers={"x-inferguard-identity": "jwt:admin"}) as c:
        r = c.post(f"{envoy.base}/v1/chat/completions?t={m}", json={"model": "m", "messages": []})
    assert r.status_code == 200
    [rec] = standin.received(m)
    got = [v for k, v in rec["headers"] if k.lower() == "x-inferguard-identity"]
    assert got == ["anonymous:127.0.0.1"]
    m = marker()
    with client(token=mint_token("alice")) as c:
        assert c.post(f"{envoy.base}/v1/chat/completions?t={m}", json={"model": "m", "messages": []}).status_code == 200
    [rec] = standin.received(m)
    assert [v for k, v in rec["headers"] if k.lower() == "x-inferguard-identity"] == ["jwt:alice"]
