"""Raw values never reach Envoy's output or stats: a value of every detector type goes through
every path (prompt, buffered and streamed answers, URL, headers, each kind of local reply), then
all Envoy wrote (access log, its own log) and all it counts (/stats, /stats/prometheus) are
searched for each value, raw and percent-encoded: zero hits. The same again with the capture of
redacted prompts and answers on (`audit.capture`), in the access log and in the capture log.

The values and the sentences that carry them come from the labelled corpus (tests/corpus), one
per detector (`data/canaries.json`)."""
import json
import os
import time
import urllib.parse
import urllib.request

import httpx
import pytest

from harness import b64, client, mint_token

CANARIES = json.load(open(os.path.join(os.path.dirname(__file__), "data", "canaries.json")))
TEXT = "\n".join(c["text"] for c in CANARIES.values())

CONFIG = {
    "admission": {"endpoints": ["/v1/files/"]},
    "request": {"max_body_bytes": 65536},
    "policies": [{"name": "strict", "match": {"paths": ["/v1/completions"]}, "request": {"mode": "block"}},
                 {"name": "tiny", "match": {"paths": ["/v1/embeddings"]}, "request": {"max_body_bytes": 64}}],
}


@pytest.fixture(scope="module", params=[None, "access_log", "capture_log"], ids=["no-capture", "capture-in-record",
                                                                                   "capture-log"])
def canary_envoy(make_envoy, request):
    """Envoy under CONFIG, with the capture off or on (named policies inherit it); `.capture` says where."""
    config = dict(CONFIG)
    if request.param:
        config["audit"] = {"capture": {"max_bytes": 65536, "to": request.param}}
    e = make_envoy(json.dumps(config))
    e.capture = request.param
    return e


def chat(content, stream=False):
    return {"model": "m", "stream": stream, "messages": [{"role": "user", "content": content}]}


def test_no_canary_reaches_envoys_logs_or_stats(canary_envoy):
    e = canary_envoy
    statuses = {}
    with client(http2=True) as c:
        # The prompt (redacted before the upstream) and the answers, buffered and streamed.
        statuses["prompt"] = c.post(f"{e.base}/v1/chat/completions", json=chat(TEXT)).status_code
        statuses["buffered"] = c.post(f"{e.base}/v1/chat/completions", json=chat(b64(TEXT))).status_code
        with c.stream("POST", f"{e.base}/v1/chat/completions", json=chat(b64(TEXT), stream=True)) as r:
            r.read()
            statuses["streamed"] = r.status_code
        for name, canary in CANARIES.items():
            v = canary["value"]
            # The URL: a path segment and the query carry the value in its sentence (some
            # detectors need the words around it, as in any text); a header.
            q = urllib.parse.quote(canary["text"], safe="")
            statuses[f"url {name}"] = c.get(f"{e.base}/v1/files/{q}/content?note={q}").status_code
            if all(32 <= ord(ch) < 127 for ch in v):
                statuses[f"header {name}"] = c.get(f"{e.base}/v1/models", headers={"x-note": v}).status_code
                # Envoy keeps a client's x-request-id (not an edge proxy here): the record must not.
                rid = v.replace(" ", "-")
                statuses[f"header-id {name}"] = c.get(f"{e.base}/v1/models", headers={"x-request-id": rid}).status_code
        # Local replies: a block, a 413, an admin endpoint, a path the filter refuses, a bad token.
        statuses["blocked"] = c.post(f"{e.base}/v1/completions", json={"model": "m", "prompt": TEXT}).status_code
        statuses["413"] = c.post(f"{e.base}/v1/embeddings", json={"model": "m", "input": TEXT}).status_code
        statuses["admin"] = c.post(f"{e.base}/api/pull?name={urllib.parse.quote(TEXT)}", json={"name": TEXT}).status_code
        statuses["400"] = c.get(f"{e.base}/v1/models/a%5c{urllib.parse.quote(CANARIES['email']['value'])}").status_code
    expired = mint_token(CANARIES["email"]["value"], exp_in=-3600)
    with client(token=expired) as c:
        statuses["401"] = c.post(f"{e.base}/v1/chat/completions", json=chat(TEXT)).status_code
    assert statuses["prompt"] == statuses["buffered"] == statuses["streamed"] == 200
    assert (statuses["blocked"], statuses["413"], statuses["admin"], statuses["400"], statuses["401"]) == (
        403, 413, 403, 400, 401), statuses
    # Forwarded (the stand-in knows no such file: 404), never refused by the filter.
    # A sentence with a backslash or a line break, or one whose value its normal form would take
    # apart (`postgres%3A%2F%2F...`: `//` merged), makes a path the filter refuses (400
    # malformed_path): a local reply, searched like the rest.
    def expected(k):
        text = CANARIES[k.split()[1]]["text"]
        if k.startswith("url") and ("\\" in text or any(ord(ch) < 32 for ch in text)):
            return (400,)
        if k.startswith("url") and "://" in text:
            return (200, 404, 400)  # refused only when the merge would hide the value
        return (200, 404)

    expected = {k: expected(k) for k in statuses if k.startswith(("url", "header"))}
    assert any(k.startswith("header-id") for k in expected)
    refused = {k: statuses[k] for k in expected if statuses[k] not in expected[k]}
    assert refused == {}, refused

    time.sleep(0.3)  # Envoy flushes its access log every 50 ms in tests
    with urllib.request.urlopen(f"http://127.0.0.1:{e.admin_port}/stats/prometheus", timeout=5) as r:
        prometheus = r.read().decode()
    haystack = e.output() + e.capture_output() + e.stats() + prometheus
    assert "inferguard=" in haystack or '"inferguard"' in haystack  # the records are there
    # With the capture on, the redacted prompt and answers are there too, in the record or the
    # capture log (and only there).
    records = [entry["inferguard"] for entry in e.log_entries() if entry["inferguard"]]
    in_records = [r["capture"] for r in records if "capture" in r]
    in_log = [line["capture"] for line in e.capture_entries()]
    captured = {None: [], "access_log": in_records, "capture_log": in_log}[e.capture]
    assert (in_records if e.capture != "access_log" else in_log) == []
    assert (len(captured) >= 3) == (e.capture is not None), captured
    if e.capture:
        texts = json.dumps(captured)
        assert texts.count("[REDACTED:") >= 3 * len(CANARIES), texts[:2000]
    hits = {}
    for name, canary in CANARIES.items():
        v = canary["value"]
        for form in {v, urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v), json.dumps(v)[1:-1]}:
            if form in haystack:
                hits.setdefault(name, []).append(form)
    assert hits == {}, hits
