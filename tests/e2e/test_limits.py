"""Abuse limits in the real Envoy (two workers): per caller and policy, shared by every worker
through proxy-wasm shared data, 429 with Retry-After in the API's shape, and the warning mark
before anything is refused."""
import uuid

import openai
import pytest

from harness import client, mint_token, tls_context

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
    markers = [marker() for _ in range(21)]
    before = worker_connections(limited)
    statuses = [ask(limited, token, m).status_code for m in markers[:20]]
    assert statuses == [200] * 20
    after = worker_connections(limited)
    assert len(after) == 2 and all(after[w] > before.get(w, 0) for w in after), (before, after)
    audits = [limited.audit_for(m) for m in markers[:20]]
    assert [a["decision"] for a in audits] == ["redacted"] * 20  # the canned answer has an e-mail address
    # Fewer than half of 20 left from the 11th on: marked, none refused.
    assert [a.get("warning") for a in audits] == [None] * 10 + ["extraction_suspected"] * 10
    r = ask(limited, token, markers[20])
    assert r.status_code == 429
    assert r.headers["retry-after"] == "3"  # one request in 60/20 s
    assert r.json() == {"error": {"message": "too many requests: retry in 3 s", "type": "invalid_request_error",
                                  "param": None, "code": "rate_limited"}}
    assert r.headers["x-content-type-options"] == "nosniff"
    audit = limited.audit_for(markers[20])
    assert (audit["decision"], audit["reason"]) == ("rate_limited", "rate_limited")
    assert standin.received(markers[20]) == []


def test_each_caller_has_its_own_allowance_and_the_sdk_raises_rate_limit_error(limited):
    first, second = (mint_token("caller-" + uuid.uuid4().hex[:8]) for _ in range(2))
    for _ in range(20):
        assert ask(limited, first, marker()).status_code == 200
    assert ask(limited, first, marker()).status_code == 429
    assert ask(limited, second, marker()).status_code == 200
    m = marker()
    sdk = openai.OpenAI(base_url=f"{limited.base}/v1", api_key=first, max_retries=0, default_query={"t": m},
                        http_client=httpx.Client(verify=tls_context(), timeout=30))
    with pytest.raises(openai.RateLimitError) as e:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 429
    assert e.value.code == "rate_limited"
    assert e.value.response.headers["retry-after"] == "3"
