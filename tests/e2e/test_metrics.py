"""The filter's metrics in the real Envoy: after a known sequence of requests, /stats/prometheus
shows each counter with exactly the labels Envoy's stats_tags extract from its name."""
import json
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from harness import b64, client, raw_spec, wait_for

POLICY = {"detect": {"rules": [{"name": "codeword", "pattern": "ZEPHYR-[0-9]{4}", "action": "block"}]}}
EMAIL_ANSWER = "write to jane.doe@corp.example or to john@corp.example"
CARD_PROMPT = "my card is 4111 1111 1111 1111, thanks"


def scrape(envoy):
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus", timeout=5) as r:
        text = r.read().decode()
    return text, list(text_string_to_metric_families(text))


def samples(families, name):
    """{frozenset(labels): value} of every sample called `name`."""
    return {frozenset(s.labels.items()): s.value for f in families for s in f.samples if s.name == name}


def chat(c, envoy, content, stream=False):
    body = {"model": "m", "messages": [{"role": "user", "content": content}], "stream": stream}
    return c.post(f"{envoy.base}/v1/chat/completions?t={uuid.uuid4().hex}", json=body)


def test_metrics_after_a_known_sequence(make_envoy):
    e = make_envoy(json.dumps(POLICY))
    with client() as c:
        for _ in range(2):
            r = chat(c, e, b64(EMAIL_ANSWER))
            assert r.status_code == 200 and "[REDACTED:EMAIL]" in r.text, r.text
        r = chat(c, e, b64(EMAIL_ANSWER), stream=True)
        assert r.status_code == 200 and "[REDACTED:EMAIL]" in r.text, r.text
        # The card is masked in the prompt; the stand-in's answer to a prompt that is not base64
        # carries one e-mail address of its own.
        r = chat(c, e, CARD_PROMPT)
        assert r.status_code == 200, r.text
        r = c.post(f"{e.base}/api/pull", json={"model": "llama3"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_endpoint", r.text
        r = chat(c, e, "the ZEPHYR-1234 launch")
        assert r.status_code == 403 and r.json()["error"]["code"] == "content_blocked", r.text
    # Histograms reach the admin output at Envoy's stats flush (every 5 s by default).
    wait_for(lambda: samples(scrape(e)[1], "inferguard_holdback_max_chars_count") == {frozenset(): 1}, 15,
             "the holdback histogram flushed")
    text, families = scrape(e)
    records = e.audit_records()
    assert [a["decision"] for _, a in records] == ["redacted"] * 4 + ["denied", "blocked"], records

    assert samples(families, "inferguard_requests_total") == {
        frozenset({"policy": "default", "decision": "redacted"}.items()): 4,
        frozenset({"policy": "default", "decision": "denied"}.items()): 1,
        frozenset({"policy": "default", "decision": "blocked"}.items()): 1,
    }
    assert samples(families, "inferguard_findings_total") == {
        frozenset({"detector": "email", "direction": "response", "action": "mask"}.items()): 7,
        frozenset({"detector": "credit_card", "direction": "request", "action": "mask"}.items()): 1,
        frozenset({"detector": "codeword", "direction": "request", "action": "block"}.items()): 1,
    }
    assert samples(families, "inferguard_refusals_total") == {
        frozenset({"reason": "admin_endpoint"}.items()): 1,
        frozenset({"reason": "rule:codeword"}.items()): 1,
    }
    # Requests as forwarded: the five bodies that were scanned (the masked card adds 3 bytes to
    # what the client sent); answers as sent to the client, the four that were not refused.
    lines = [entry for entry in e.log_entries() if entry.get("inferguard")]
    sent = [int(entry["bytes_sent"]) for entry in lines]
    received = [int(entry["bytes_received"]) for entry in lines]
    assert samples(families, "inferguard_scanned_bytes_total") == {
        frozenset({"direction": "request"}.items()): sum(received[:4]) + 3 + received[5],
        frozenset({"direction": "response"}.items()): sum(sent[:4]),
    }, (received, sent)
    assert samples(families, "inferguard_streamed_responses_total") == {frozenset({"policy": "default"}.items()): 1}
    assert samples(families, "inferguard_active_streams") == {frozenset(): 0}
    assert samples(families, "inferguard_holdback_max_chars_count") == {frozenset(): 1}
    # What the filter holds: no stream's state once all have ended; its linear memory, in whole
    # wasm pages, over every worker's VM.
    assert samples(families, "inferguard_live_exchanges") == {frozenset(): 0}
    [memory] = samples(families, "inferguard_memory_bytes").values()
    assert memory > 0 and memory % 65536 == 0, memory
    # Envoy's own /stats lists the raw names, labels still inside, in its wasmcustom namespace.
    assert "wasmcustom.inferguard_requests_total;policy=default;decision=denied: 1" in e.stats().splitlines()
    assert "wasmcustom.inferguard_refusals_total;reason=rule:codeword: 1" in e.stats().splitlines()


def sse_chunk(content):
    return b"data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                   "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}).encode() + b"\n\n"


def test_active_streams_and_live_exchanges_count_an_answer_while_it_streams(make_envoy):
    e = make_envoy("")
    gauge = lambda: samples(scrape(e)[1], "inferguard_active_streams")
    live = lambda: samples(scrape(e)[1], "inferguard_live_exchanges")
    chunks = [sse_chunk("mail jane.doe@corp.example now "), sse_chunk("and more"), b"data: [DONE]\n\n"]
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with client() as c:
        with c.stream("POST", f"{e.base}/v1/chat/completions", json=body,
                      headers=raw_spec(chunks, "text/event-stream", delay_ms=1500)) as r:
            pieces = r.iter_raw()
            first = next(pieces)
            assert b"[REDACTED:EMAIL]" in first, first
            assert gauge() == {frozenset(): 1}
            assert live() == {frozenset(): 1}
            rest = b"".join(pieces)
        assert rest.endswith(b"data: [DONE]\n\n"), rest
    wait_for(lambda: gauge() == {frozenset(): 0}, 5, "the stream counted out")
    wait_for(lambda: live() == {frozenset(): 0}, 5, "the stream's state deleted")
    assert samples(scrape(e)[1], "inferguard_streamed_responses_total") == {frozenset({"policy": "default"}.items()): 1}
