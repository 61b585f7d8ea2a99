"""inferguard under Istio's own configuration of a WasmPlugin: the real Envoy with the filter as
istiod generates it (render.py --istio-wasmplugin: ECDS, V8, FAIL_CLOSED, and no
allow_on_headers_stop_iteration, which a WasmPlugin cannot set), jwt_authn as a
RequestAuthentication sets it up, and the plugin configuration without `hold_headers`.

There Envoy will not hold headers for the filter, so it sends them at once (without
`content-length`) and still reads each body whole before any of it goes on: nothing stalls,
nothing leaks, and a refusal of an answer whose headers went out is its body, in the API's error
shape. A refusal of a prompt is still a status (no answer has started)."""
import base64
import json
import subprocess
import uuid

import httpx
import openai
import pytest
import yaml

from harness import CA, ROOT, client, mint_token, raw_spec, tls_context
from istio_package import istio_variants, plugin_configs

EMAIL = "jane.doe@acme-corp.com"
ISTIO_NAME = "inference/inferguard"


@pytest.fixture(scope="module")
def istio_envoy(make_envoy):
    """The default policy, for scanning; and a named policy that blocks answers (model `blocked-*`)."""
    cfg = {"policies": [{"name": "strict", "match": {"models": ["blocked-*"]}, "response": {"mode": "block"},
                         "request": {"mode": "block"}}]}
    return make_envoy(json.dumps(cfg), istio_wasmplugin=ISTIO_NAME)


@pytest.fixture(scope="module")
def shipped_envoy(make_envoy):
    """The pluginConfig of istio/wasmplugin.yaml, as the WasmPlugin ships it."""
    with open(f"{ROOT}/istio/wasmplugin.yaml") as f:
        plugin = next(d for d in yaml.safe_load_all(f) if d and d["kind"] == "WasmPlugin")
    return make_envoy(json.dumps(plugin["spec"]["pluginConfig"]), istio_wasmplugin=ISTIO_NAME)


def curl(envoy, path, body=None, headers=(), method=None):
    """One HTTP/1.1 request with curl: (status, headers, raw body, marker). The marker is in the
    query, so the record and what reached the upstream can be found."""
    marker = uuid.uuid4().hex
    args = ["curl", "-sS", "--http1.1", "--max-time", "10", "--cacert", CA, "-D", "-",
            f"{envoy.base}{path}?t={marker}"]
    if method:
        args += ["-X", method]
    if body is not None:
        args += ["-H", "content-type: application/json", "--data-binary", body]
    for k, v in headers:
        args += ["-H", f"{k}: {v}"]
    r = subprocess.run(args, capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr  # a stalled stream ends in curl's timeout (28)
    head, _, raw = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, raw, marker


def say(text):
    """A prompt that makes the stand-in answer `text`, without the prompt carrying it in the clear."""
    return "echo-b64:" + base64.b64encode(text.encode()).decode()


def chat(content, model="m", stream=False):
    return json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]})


def test_the_filter_runs_as_istiod_configures_it(istio_envoy):
    with open(istio_envoy.yaml) as f:
        bootstrap = f.read()
    with open(istio_envoy.ecds_path) as f:
        wasm = json.load(f)["resources"][0]["typed_config"]["config"]
    assert "allow_on_headers_stop_iteration" not in bootstrap and "allow_on_headers_stop_iteration" not in wasm
    assert "config_discovery" in bootstrap and wasm["failure_policy"] == "FAIL_CLOSED"
    assert "hold_headers" not in wasm["configuration"]["value"]


def test_requests_without_and_with_a_body_do_not_stall(istio_envoy, standin):
    status, headers, raw, _ = curl(istio_envoy, "/v1/models")
    assert status == 200 and json.loads(raw)["object"] == "list"
    # The answer's headers went out before its body was read: no length, the policy's headers on.
    status, headers, raw, marker = curl(istio_envoy, "/v1/chat/completions", chat(say(f"mail {EMAIL} now")))
    assert status == 200, raw
    assert "content-length" not in headers and headers.get("transfer-encoding") == "chunked"
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    assert json.loads(raw)["choices"][0]["message"]["content"] == "mail [REDACTED:EMAIL] now"
    record = istio_envoy.audit_for(marker)
    assert (record["decision"], record["response"].get("findings")) == ("redacted", {"email": 1}), json.dumps(record)


def test_the_openai_sdk_reads_redacted_answers_buffered_and_streamed(istio_envoy):
    # The API key is a token of the mesh's issuer: under Istio, jwt_authn refuses any other bearer.
    c = openai.OpenAI(base_url=f"{istio_envoy.base}/v1", api_key=mint_token("alice"), max_retries=0,
                      http_client=httpx.Client(verify=tls_context(None), timeout=20))
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": say(f"ask {EMAIL} today")}])
    assert r.choices[0].message.content == "ask [REDACTED:EMAIL] today"
    text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="m", stream=True, messages=[{"role": "user", "content": say(f"ask {EMAIL} today")}],
        extra_headers={"x-standin-chars": "2"}) if ch.choices)
    assert text == "ask [REDACTED:EMAIL] today"


def test_a_prompt_goes_whole_and_redacted_without_its_length(istio_envoy, standin):
    body = chat(f"echo:fine; my mail is {EMAIL}")
    status, _, raw, marker = curl(istio_envoy, "/v1/chat/completions", body)
    assert status == 200, raw
    (rec,) = standin.received(marker)
    assert EMAIL.encode() not in rec["body"] and b"[REDACTED:EMAIL]" in rec["body"]
    json.loads(rec["body"])
    sent = {k.lower(): v for k, v in rec["headers"]}
    # Envoy sent the request headers before the body was judged: chunked, without the client's length.
    assert "content-length" not in sent and sent.get("transfer-encoding") == "chunked"


def test_a_refused_prompt_is_still_a_status(istio_envoy, standin):
    status, headers, raw, marker = curl(istio_envoy, "/v1/chat/completions", chat(f"mail {EMAIL}", model="blocked-1"))
    assert status == 403 and headers["x-inferguard"] == "refused"
    assert json.loads(raw)["error"]["code"] == "content_blocked"
    # Its headers may have reached the upstream (they could not wait), never the body.
    assert all(EMAIL.encode() not in r["body"] for r in standin.received(marker))
    assert istio_envoy.audit_for(marker)["reason"] == "rule:email"


def test_an_answer_refused_after_its_headers_went_is_its_error_body(istio_envoy):
    # Blocked by the policy's mode: the status already went (200), the body is the error.
    answer = json.dumps({"id": "x", "object": "chat.completion", "model": "blocked-2",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": f"mail {EMAIL}"},
                                      "finish_reason": "stop"}]})
    status, headers, raw, marker = curl(istio_envoy, "/v1/chat/completions", chat("hi", "blocked-3"),
                                        headers=list(raw_spec(answer, "application/json").items()))
    assert status == 200 and "content-length" not in headers
    assert raw == (b'{"error":{"message":"blocked by inferguard policy (rule email)","type":"invalid_request_error",'
                   b'"param":null,"code":"content_blocked"}}')
    record = istio_envoy.audit_for(marker)
    assert (record["decision"], record["reason"], record["policy"]) == ("blocked", "rule:email", "strict")
    # Unreadable JSON: refused the same way, nothing of it forwarded.
    status, headers, raw, marker = curl(istio_envoy, "/v1/chat/completions", chat("hi"),
                                        headers=list(raw_spec(f'{{"choices":[{{"message":{{"content":"{EMAIL}"',
                                                              "application/json").items()))
    assert status == 200 and b"jane" not in raw
    assert json.loads(raw)["error"]["code"] == "malformed_response"
    assert istio_envoy.audit_for(marker)["reason"] == "malformed_response"


def test_the_shipped_plugin_config_admits_a_token_whose_scope_istio_split_into_a_list(shipped_envoy):
    # jwt_authn as Istio configures it hands `scope` over as a list (space_delimited_claims).
    token = mint_token("alice", scopes=["inference", "read"])
    with client(token=token) as c:
        r = c.post(f"{shipped_envoy.base}/v1/chat/completions", content=chat(say(f"hi {EMAIL}")),
                   headers={"content-type": "application/json", "x-request-id": str(uuid.uuid4())})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hi [REDACTED:EMAIL]"
    # Without the scope: 403 at the head (a status: nothing had gone out yet).
    with client(token=mint_token("bob", scopes=["read"])) as c:
        r = c.post(f"{shipped_envoy.base}/v1/chat/completions", content=chat("hi"),
                   headers={"content-type": "application/json"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    # A token that fails verification: jwt_authn itself refuses it under Istio.
    with client(token=mint_token("eve", scopes=["inference"], key="jwt-other")) as c:
        r = c.post(f"{shipped_envoy.base}/v1/chat/completions", content=chat("hi"),
                   headers={"content-type": "application/json"})
    assert r.status_code == 401


# --- each shipped pluginConfig, as Istio delivers it, against the same policy under envoy/ ----------

@pytest.fixture(scope="module")
def shipped_configs(tmp_path_factory):
    return plugin_configs(istio_variants(tmp_path_factory))


def outcome(envoy, token, model, answer):
    """One chat request with `token`, whose answer is `answer`: (status, body, record's decision,
    reason and policy)."""
    marker = uuid.uuid4().hex
    with client(token=token) as c:
        r = c.post(f"{envoy.base}/v1/chat/completions?t={marker}", content=chat(say(answer), model),
                   headers={"content-type": "application/json"})
    record = envoy.audit_for(marker)
    return r.status_code, r.content, (record["decision"], record.get("reason"), record["policy"])


# (caller's scopes, model, answer): admitted and redacted; no token; a missing scope; a policy that
# blocks answers.
CALLS = [
    (["inference"], "m", f"write to {EMAIL}"),
    (None, "m", "hi"),
    (["read"], "m", "hi"),
    (["inference:restricted"], "gpt-4o", f"write to {EMAIL}"),
]


@pytest.mark.parametrize("where", ["sidecar/inferguard", "ingress/inferguard-ingress", "ambient/inferguard",
                                   "envoyfilter/inferguard"])
def test_each_shipped_policy_as_istio_delivers_it_behaves_as_under_envoy_config(where, shipped_configs, make_envoy):
    cfg = shipped_configs[where]
    # Under envoy/ (the harness holds headers, as envoy/envoy.yaml lets it).
    reference = make_envoy(json.dumps({k: v for k, v in cfg.items() if k != "hold_headers"}))
    # As Istio delivers it: a WasmPlugin's through istiod's ECDS shape; the EnvoyFilter's keeps
    # allow_on_headers_stop_iteration, which the harness's own rendering has.
    delivered = make_envoy(json.dumps(cfg)) if where.startswith("envoyfilter/") else \
        make_envoy(json.dumps(cfg), istio_wasmplugin=ISTIO_NAME)
    wanted = []
    for scopes, model, answer in CALLS:
        token = None if scopes is None else mint_token(f"u-{uuid.uuid4().hex[:8]}", scopes=scopes)
        want = outcome(reference, token, model, answer)
        got = outcome(delivered, token, model, answer)
        wanted.append((want[0], want[2][0], want[2][1]))
        if want[2][1] == "rule:email" and "hold_headers" not in cfg:
            # The answer was refused after its headers went: its body is the same error.
            assert (got[0], got[1], got[2]) == (200, want[1], want[2]), (scopes, model)
        else:
            assert got == want, (scopes, model)
        assert b"jane" not in got[1]
    assert wanted == [(200, "redacted", None), (401, "denied", "identity_required"),
                      (403, "denied", "insufficient_scope"), (403, "blocked", "rule:email")]
