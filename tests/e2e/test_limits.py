"""Abuse limits in the real Envoy (two workers): per caller and policy, shared by every worker
through proxy-wasm shared data, 429 with Retry-After in the API's shape, and the warning mark
before anything is refused."""
import json
import math
import threading
import time
import urllib.request
import uuid

import openai
import pytest

from harness import b64, client, mint_token, raw_spec, tls_context, wait_for

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


# --- Output counted in completion tokens -------------------------------------------------------

# 40 tokens a minute: two answers of 30 overdraw it.
OUTPUT = '{"limits": {"output_per_minute": 40}}'
# 30 words: 30 completion tokens as the stand-in counts them (one a word), 149 bytes of text.
WORDS = " ".join(["word"] * 30)


@pytest.fixture(scope="module")
def output_limited(make_envoy):
    return make_envoy(OUTPUT)


def post(envoy, token, path, m, body, headers=None):
    with client(token=token, headers=headers) as c:
        return c.post(f"{envoy.base}{path}?t={m}", json=body)


def test_output_is_counted_in_the_completion_tokens_the_answer_reports_buffered_and_streamed(output_limited):
    token = mint_token("output-" + uuid.uuid4().hex[:8])
    chat = {"model": "m", "messages": [{"role": "user", "content": b64(WORDS)}]}
    m = marker()
    r = post(output_limited, token, "/v1/chat/completions", m, chat)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 30, r.text
    assert output_limited.audit_for(m)["response"]["output_tokens"] == 30
    # Streamed with include_usage: the last chunk's usage.
    m = marker()
    r = post(output_limited, token, "/v1/chat/completions", m,
             dict(chat, stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200 and '"completion_tokens": 30' in r.text, r.text
    assert output_limited.audit_for(m)["response"]["output_tokens"] == 30
    # 40 - 30 - 30 = -20: the next request waits until 20 tokens are back at 40 a minute (30 s,
    # less what refilled since).
    m = marker()
    r = post(output_limited, token, "/v1/chat/completions", m, chat)
    assert r.status_code == 429, r.text
    assert 29 <= int(r.headers["retry-after"]) <= 30
    audit = output_limited.audit_for(m)
    assert (audit["decision"], "output_tokens" in audit["response"]) == ("rate_limited", False)


def test_cumulative_counts_are_not_summed_and_an_answer_without_a_count_is_charged_its_bytes(output_limited):
    # Anthropic's stream reports 1 output token in message_start and 9 in message_delta: 9 in all.
    token = mint_token("output-" + uuid.uuid4().hex[:8])
    m = marker()
    r = post(output_limited, token, "/v1/messages", m,
             {"model": "m", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and '"output_tokens": 9' in r.text, r.text
    assert output_limited.audit_for(m)["response"]["output_tokens"] == 9
    m = marker()
    assert post(output_limited, token, "/v1/chat/completions", m, {"model": "m", "messages": []}).status_code == 200
    # A stream without usage: its bytes as sent, far more than 40.
    token = mint_token("output-" + uuid.uuid4().hex[:8])
    m = marker()
    r = post(output_limited, token, "/v1/chat/completions", m,
             {"model": "m", "stream": True, "messages": [{"role": "user", "content": b64(WORDS)}]})
    assert r.status_code == 200 and "usage" not in r.text, r.text
    audit = output_limited.audit_for(m)
    assert "output_tokens" not in audit["response"]
    sent = audit["response"]["bytes"]
    assert sent == len(r.content) > 1000
    r = post(output_limited, token, "/v1/chat/completions", marker(), {"model": "m", "messages": []})
    assert r.status_code == 429
    # Back to 0 from 40 - sent at 40 a minute (less what refilled since).
    want = math.ceil((sent - 40) * 60 / 40)
    assert want - 1 <= int(r.headers["retry-after"]) <= want


def test_a_tiny_reported_count_is_raised_to_one_token_per_16_bytes_of_text(output_limited):
    """The upstream is not trusted to count: 0 tokens for 800 bytes of text is charged as 52."""
    text = "x" * 800
    doc = {"id": "c", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"completion_tokens": 0}}
    # Every string of a whole answer is its text: 1 + 15 + 9 + 800 + 4 bytes.
    assert sum(len(s) for s in ("c", "chat.completion", "assistant", text, "stop")) == 829
    token = mint_token("output-" + uuid.uuid4().hex[:8])
    m = marker()
    r = post(output_limited, token, "/v1/chat/completions", m, {"model": "m", "messages": []},
             headers=raw_spec(json.dumps(doc), "application/json", content_length=True))
    assert r.status_code == 200 and r.json()["usage"] == {"completion_tokens": 0}, r.text
    assert output_limited.audit_for(m)["response"]["output_tokens"] == math.ceil(829 / 16) == 52
    # 52 of 40: the caller is over its allowance.
    assert post(output_limited, token, "/v1/chat/completions", marker(), {"model": "m", "messages": []}).status_code == 429


# --- Bounded memory under identity cycling -----------------------------------------------------

SLOTS = 256
CYCLING = {"limits": {"requests_per_minute": 3, "output_per_minute": 1000000, "max_callers": SLOTS}}
# Callers never seen before, after every slot holds its keys.
NEW_CALLERS = 3000
THREADS = 4
# Envoy's heap may grow by less than this while NEW_CALLERS callers come and go (measured: about
# 16 KiB). Without the slots (max_callers 65536) the same callers add about 5,800 keys and 680 KiB
# (measured in Envoy 1.40, about 120 bytes a key), so a cap that did not hold would fail this.
MEMORY_BOUND = 256 * 1024


def slot_of(policy: str, caller: str, slots: int) -> int:
    """src/limits' slot_of: FNV-1a over `policy`, a NUL and `caller`, modulo the slots."""
    h = 0xcbf29ce484222325
    for b in policy.encode() + b"\0" + caller.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % slots


def allocated(envoy) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/memory", timeout=5) as r:
        return int(json.load(r)["allocated"])


def limit_buckets(envoy):
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus", timeout=5) as r:
        text = r.read().decode()
    return [line for line in text.splitlines() if line.startswith("inferguard_limit_buckets")]


def send_as(envoy, subjects):
    """One chat completion per subject (a verified JWT each), from THREADS threads, each on a new
    connection every 50 requests (so both workers serve them); {subject: (status, retry-after)}."""
    out = {}

    def work(part):
        c = None
        for i, sub in enumerate(part):
            if i % 50 == 0:
                if c is not None:
                    c.close()
                c = client()
            token = mint_token(sub)
            r = c.post(f"{envoy.base}/v1/chat/completions", headers={"authorization": f"Bearer {token}"},
                       json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            out[sub] = (r.status_code, r.headers.get("retry-after"))
        c.close()

    threads = [threading.Thread(target=work, args=(subjects[k::THREADS],)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == len(subjects)
    return out


def test_cycling_identities_keeps_the_keys_and_memory_bounded_and_the_limit_holding(make_envoy):
    e = make_envoy(json.dumps(CYCLING))
    run = uuid.uuid4().hex[:8]
    before = worker_connections(e)
    start = time.monotonic()
    # One caller for each slot: every slot gets its two buckets (requests and output).
    first = {}
    for i in range(100_000):
        sub = f"cycle-{run}-{i}"
        first.setdefault(slot_of("default", sub, SLOTS), sub)
        if len(first) == SLOTS:
            break
    got = send_as(e, list(first.values()))
    assert {s for s, _ in got.values()} == {200}
    wait_for(lambda: limit_buckets(e) == [f'inferguard_limit_buckets{{policy="default"}} {2 * SLOTS}'], 10,
             "two bucket keys per slot")
    heap = allocated(e)
    # Thousands of callers never seen: their slots' keys exist, so nothing is added.
    fresh = [f"cycle-{run}-new-{j}" for j in range(NEW_CALLERS)]
    got = send_as(e, fresh)
    elapsed = time.monotonic() - start
    grown = allocated(e) - heap
    print(f"{NEW_CALLERS} new callers in {elapsed:.1f} s; heap {heap} -> +{grown} bytes")
    assert limit_buckets(e) == [f'inferguard_limit_buckets{{policy="default"}} {2 * SLOTS}']
    assert grown < MEMORY_BOUND, grown
    after = worker_connections(e)
    assert len(after) == 2 and all(after[w] > before.get(w, 0) for w in after), (before, after)
    # The limit holds per slot: its first caller took 1 of 3, so the new callers of that slot
    # share the 2 left (and what refilled, one every 20 s): stricter for them, never looser.
    per_slot = {}
    for sub, (status, retry_after) in got.items():
        n = per_slot.setdefault(slot_of("default", sub, SLOTS), {"sent": 0, "served": 0})
        n["sent"] += 1
        if status == 200:
            n["served"] += 1
        else:
            assert status == 429 and 1 <= int(retry_after) <= 20, (status, retry_after)
    refill = int(elapsed / 20)
    assert len(per_slot) == SLOTS
    assert all(min(n["sent"], 2) <= n["served"] <= min(n["sent"], 2 + refill) for n in per_slot.values()), per_slot
    served = sum(n["served"] for n in per_slot.values())
    assert 2 * SLOTS <= served <= (2 + refill) * SLOTS < NEW_CALLERS, served
