"""Admission in the real Envoy: every decision of issue 11, as the API's own clients see it.

Each refusal is checked for its exact status, the error body the API's clients parse (through the
official OpenAI, Anthropic and Ollama SDKs where one applies), its headers (`WWW-Authenticate`),
the audit record (`decision`, `policy`, `identity`, `reason`), and that the upstream never
received it (`standin.received(marker)`, asked of the stand-in directly). Every request carries a
unique marker in its query string (`?t=...`): the access log's request line holds the path, so the
marker finds the audit record, and the stand-in's record of what reached it.

One Envoy per configuration (module-scoped), stopped at the end of the module.
"""
import http.client
import json
import subprocess
import uuid

import anthropic
import httpx
import httpx2
import ollama
import openai
import pytest

from harness import CA, CLIENT_IDS, LEGACY_HOST, client, mint_token, tls_context, wait_for

CHAT_ID = {"source": "mtls", "subject": CLIENT_IDS["chat"]}
BATCH_ID = {"source": "mtls", "subject": CLIENT_IDS["batch"]}
ANONYMOUS = {"source": "anonymous"}
EMAIL = "jane.doe@acme-corp.com"


def new_marker() -> str:
    return uuid.uuid4().hex


def chat(content="echo:fine", model="m", **kw):
    return {"model": model, "messages": [{"role": "user", "content": content}], **kw}


def oai(envoy, marker, token=None, cert=None, headers=None):
    """The OpenAI SDK through Envoy: `Authorization: Bearer token` (an API key, `sk-test`, without
    one: what every OpenAI client sends), client certificate `cert`, `?t=marker` on every request."""
    return openai.OpenAI(base_url=f"{envoy.base}/v1", api_key=token or "sk-test", max_retries=0,
                         default_query={"t": marker}, default_headers=headers,
                         http_client=httpx.Client(verify=tls_context(cert), timeout=30))


def claude(envoy, marker, token=None, cert=None):
    """The Anthropic SDK through Envoy: a bearer token (`auth_token`), or an API key in `x-api-key`
    (which jwt_authn does not read: an anonymous caller). anthropic 2.x is built on httpx2."""
    auth = {"auth_token": token} if token else {"api_key": "sk-ant-test"}
    return anthropic.Anthropic(base_url=envoy.base, max_retries=0, default_query={"t": marker},
                               http_client=httpx2.Client(verify=tls_context(cert), timeout=30), **auth)


def olla(envoy, marker, token=None, cert=None):
    """The official Ollama client through Envoy (extra keywords go to its httpx client)."""
    headers = {"authorization": f"Bearer {token}"} if token else None
    return ollama.Client(host=envoy.base, verify=tls_context(cert), headers=headers, params={"t": marker}, timeout=30)


def openai_error(status, code, message):
    return {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                      "param": None, "code": code}}


def anthropic_error(kind, message):
    return {"type": "error", "error": {"type": kind, "message": message}}


def assert_audit(envoy, marker, decision, policy, identity, reason=None, **more):
    """The audit record of the request carrying `marker`: the fields admission decides."""
    audit = envoy.audit_for(marker)
    got = {"decision": audit["decision"], "policy": audit.get("policy"), "identity": audit.get("identity"),
           "reason": audit.get("reason")}
    assert got == {"decision": decision, "policy": policy, "identity": identity, "reason": reason}, audit
    for k, v in more.items():
        assert audit.get(k) == v, (k, audit)
    return audit


def assert_nothing_upstream(marker, *standins):
    for s in standins:
        assert s.received(marker) == [], f"the upstream {s.address} received {marker}"


def raw_request(envoy, method, path, body=None, headers=None, cert=None, host=None):
    """One HTTP/1.1 request over TLS with the target exactly as written (http.client sends the path
    as given: no client-side normalisation). Returns (status, headers, body bytes)."""
    conn = http.client.HTTPSConnection("localhost", envoy.https_port, context=tls_context(cert), timeout=30)
    try:
        h = dict(headers or {})
        if host:
            h["Host"] = host
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
            h.setdefault("content-type", "application/json")
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def start(make_envoy):
    """make_envoy, with every Envoy this module starts stopped when the module ends."""
    started = []

    def go(config: dict, **kw):
        e = make_envoy(json.dumps(config), **kw)
        started.append(e)
        return e

    yield go
    for e in started:
        e.stop()


# --- configurations -------------------------------------------------------------------------------

SCOPES = {
    # Everyone needs a verified token with `inference`; gpt-4*/claude-* need `inference:restricted`.
    "admission": {"required_scopes": ["inference"]},
    "policies": [
        {"name": "restricted", "match": {"models": ["gpt-4*", "claude-*"]},
         "admission": {"required_scopes": ["inference:restricted"]}},
        {"name": "members", "match": {"subjects": ["alice", "bob"]},
         "admission": {"required_scopes": ["inference"]}},
    ],
}

MODELS = {
    # Everyone may use llama-*, researchers also mistral-*; gpt-4* is another policy that needs mTLS.
    "admission": {"models": [{"groups": ["research"], "allow": ["llama-*", "mistral-*"]},
                             {"allow": ["llama-*"]}]},
    "policies": [
        {"name": "restricted", "match": {"models": ["gpt-4*"]},
         "admission": {"require_client_certificate": True}},
    ],
}

IDENTITIES = {
    # The default lets anonymous callers chat and nothing else; identities unlock more.
    "policies": [
        {"name": "research", "match": {"groups": ["research"]},
         "admission": {"require_identity": True, "models": [{"allow": ["llama-*", "research-*"]}]}},
        {"name": "batch", "match": {"spiffe": ["spiffe://cluster.local/ns/batch/*"]},
         "admission": {"endpoints": ["ollama.pull"]}},
        {"name": "admins", "match": {"subjects": ["admin"]},
         "admission": {"require_identity": True, "endpoints": ["ollama.pull", "/v1/files/"]}},
        {"name": "members", "match": {"paths": ["/v1/responses"]},
         "admission": {"require_identity": True}},
    ],
}

SIZE = {
    "policies": [
        {"name": "small-prompts", "match": {"subjects": ["intern-*"]}, "request": {"max_body_bytes": 1024}},
    ],
}


@pytest.fixture(scope="module")
def scopes_envoy(start):
    return start(SCOPES)


@pytest.fixture(scope="module")
def models_envoy(start):
    return start(MODELS)


@pytest.fixture(scope="module")
def ident_envoy(start):
    return start(IDENTITIES)


@pytest.fixture(scope="module")
def size_envoy(start):
    return start(SIZE)


@pytest.fixture(scope="module")
def upstream_tls_envoy(start):
    return start({"admission": {"require_upstream_tls": True}})


# --- 1. allowed -------------------------------------------------------------------------------------

def test_a_valid_token_with_the_scope_is_allowed_and_audited_with_policy_and_identity(scopes_envoy, standin):
    marker = new_marker()
    token = mint_token("alice", scopes=["inference"])
    r = oai(scopes_envoy, marker, token=token).chat.completions.create(
        model="m", messages=[{"role": "user", "content": f"echo:write to {EMAIL}"}])
    assert r.choices[0].message.content == "write to [REDACTED:EMAIL]"
    [rec] = standin.received(marker)
    assert EMAIL not in rec["body"].decode()
    # forward: false: the verified token is not sent upstream.
    assert not [v for k, v in rec["headers"] if k.lower() == "authorization"]
    assert_audit(scopes_envoy, marker, "redacted", "members", {"source": "jwt", "subject": "alice"},
                 route="default", api="openai.chat_completions", model="m")


# --- 2. 426 from the filter -------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_plaintext_through_the_filter_chain_gets_the_filters_426(envoy, standin, api):
    """A listener without TLS that runs the same chain (jwt_authn, inferguard, router): the filter's
    `require_tls` (on by default) answers 426 in the API's error shape, audited, nothing forwarded."""
    marker = new_marker()
    path, body = {"openai": ("/v1/chat/completions", chat()),
                  "anthropic": ("/v1/messages", {"model": "claude-x", "max_tokens": 8,
                                                 "messages": [{"role": "user", "content": "hi"}]})}[api]
    r = httpx.post(f"{envoy.plain_filtered_base}{path}?t={marker}", json=body, timeout=30)
    assert r.status_code == 426, r.text
    assert r.headers["content-type"].startswith("application/json")
    message = "TLS is required: connect with https://"
    assert r.json() == (openai_error(426, "tls_required", message) if api == "openai"
                        else anthropic_error("invalid_request_error", message))
    assert_audit(envoy, marker, "denied", "default", ANONYMOUS, "tls_required", route="default")
    assert_nothing_upstream(marker, standin)


def test_the_direct_response_426_listener_is_unchanged(envoy):
    """The plaintext port Envoy answers itself: no filter, no audit record."""
    r = httpx.post(f"http://127.0.0.1:{envoy.plain_port}/v1/chat/completions", json=chat(), timeout=30)
    assert r.status_code == 426
    assert r.json()["error"]["code"] == "tls_required"
    # The security headers every response carries (no HSTS: this is not a TLS connection).
    for name, value in [("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
                        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
                        ("referrer-policy", "no-referrer"), ("cache-control", "no-store"), ("vary", "Origin")]:
        assert r.headers.get(name) == value, (name, dict(r.headers))
    assert "server" not in r.headers and "strict-transport-security" not in r.headers


# --- 3. mTLS required (a policy chosen by model) ----------------------------------------------------

def test_a_policy_requiring_a_client_certificate_refuses_without_one(models_envoy, standin):
    marker = new_marker()
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai(models_envoy, marker).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    message = "this endpoint requires a client certificate (mutual TLS)"
    assert e.value.status_code == 403
    assert e.value.body == openai_error(403, "client_certificate_required", message)["error"]
    assert e.value.code == "client_certificate_required"
    assert_audit(models_envoy, marker, "denied", "restricted", ANONYMOUS, "client_certificate_required")
    assert_nothing_upstream(marker, standin)


def test_with_the_client_certificate_the_policy_admits_and_names_the_spiffe_id(models_envoy, standin):
    marker = new_marker()
    r = oai(models_envoy, marker, cert="chat").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "echo:fine"}])
    assert r.choices[0].message.content == "fine"
    assert len(standin.received(marker)) == 1
    assert_audit(models_envoy, marker, "allowed", "restricted", CHAT_ID, model="gpt-4o")


def test_with_a_token_and_a_client_certificate_the_subject_is_the_tokens(models_envoy, standin):
    marker = new_marker()
    r = oai(models_envoy, marker, token=mint_token("alice"), cert="chat").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "echo:fine"}])
    assert r.choices[0].message.content == "fine"
    assert_audit(models_envoy, marker, "allowed", "restricted", {"source": "jwt", "subject": "alice"})


# --- 4. scopes ----------------------------------------------------------------------------------------

SCOPE_CHALLENGE = 'Bearer error="insufficient_scope", scope="inference:restricted"'
SCOPE_MESSAGE = "the token lacks the scope `inference:restricted`"


def test_a_token_without_the_policys_scope_gets_403_insufficient_scope_openai(scopes_envoy, standin):
    marker = new_marker()
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai(scopes_envoy, marker, token=mint_token("alice", scopes=["inference"])).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 403
    assert e.value.code == "insufficient_scope"
    assert e.value.body == openai_error(403, "insufficient_scope", SCOPE_MESSAGE)["error"]
    assert e.value.response.headers["www-authenticate"] == SCOPE_CHALLENGE
    assert_audit(scopes_envoy, marker, "denied", "restricted", {"source": "jwt", "subject": "alice"},
                 "insufficient_scope")
    assert_nothing_upstream(marker, standin)


def test_a_token_without_the_policys_scope_gets_403_insufficient_scope_anthropic(scopes_envoy, standin):
    marker = new_marker()
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        claude(scopes_envoy, marker, token=mint_token("alice", scopes=["inference"])).messages.create(
            model="claude-sonnet-4", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 403
    assert e.value.body == anthropic_error("permission_error", SCOPE_MESSAGE)
    assert e.value.response.headers["www-authenticate"] == SCOPE_CHALLENGE
    assert_audit(scopes_envoy, marker, "denied", "restricted", {"source": "jwt", "subject": "alice"},
                 "insufficient_scope", api="anthropic.messages")
    assert_nothing_upstream(marker, standin)


@pytest.mark.parametrize("claim", ["scope", "scp"])
def test_a_token_with_the_scope_passes_as_scope_or_as_an_scp_list(scopes_envoy, standin, claim):
    marker = new_marker()
    scopes = ["inference", "inference:restricted"]
    token = (mint_token("bob", scopes=scopes) if claim == "scope" else mint_token("bob", scp=scopes))
    r = oai(scopes_envoy, marker, token=token).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "echo:fine"}])
    assert r.choices[0].message.content == "fine"
    assert len(standin.received(marker)) == 1
    assert_audit(scopes_envoy, marker, "allowed", "restricted", {"source": "jwt", "subject": "bob"})


def test_without_any_identity_a_required_scope_is_a_401_challenge(scopes_envoy, standin):
    """An API key is not a token: the caller is anonymous, and the scope asks for one (401, not 403)."""
    marker = new_marker()
    with pytest.raises(openai.AuthenticationError) as e:
        oai(scopes_envoy, marker).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.code == "identity_required"
    assert e.value.response.headers["www-authenticate"] == 'Bearer realm="inferguard", scope="inference"'
    assert_audit(scopes_envoy, marker, "denied", "default", ANONYMOUS, "identity_required")
    assert_nothing_upstream(marker, standin)


# --- 5. models ------------------------------------------------------------------------------------------

MODEL_MESSAGE = "the model `mistral-7b` is not allowed for this caller"


def test_a_model_outside_the_rule_is_refused_through_the_openai_sdk(models_envoy, standin):
    marker = new_marker()
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai(models_envoy, marker).chat.completions.create(model="mistral-7b", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 403
    assert e.value.body == openai_error(403, "model_not_allowed", MODEL_MESSAGE)["error"]
    assert_audit(models_envoy, marker, "denied", "default", ANONYMOUS, "model_not_allowed", model="mistral-7b")
    assert_nothing_upstream(marker, standin)


def test_a_model_outside_the_rule_is_refused_through_the_anthropic_sdk(models_envoy, standin):
    marker = new_marker()
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        claude(models_envoy, marker).messages.create(model="mistral-7b", max_tokens=16,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 403
    assert e.value.body == anthropic_error("permission_error", MODEL_MESSAGE)
    assert_audit(models_envoy, marker, "denied", "default", ANONYMOUS, "model_not_allowed", api="anthropic.messages",
                 model="mistral-7b")
    assert_nothing_upstream(marker, standin)


def test_a_model_outside_the_rule_is_refused_through_the_ollama_client(models_envoy, standin):
    marker = new_marker()
    with pytest.raises(ollama.ResponseError) as e:
        olla(models_envoy, marker).chat(model="mistral-7b", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 403
    assert e.value.error == MODEL_MESSAGE
    assert_audit(models_envoy, marker, "denied", "default", ANONYMOUS, "model_not_allowed", api="ollama.chat",
                 model="mistral-7b")
    assert_nothing_upstream(marker, standin)


def test_an_allowed_model_passes_through_every_client(models_envoy, standin):
    m1, m2, m3 = new_marker(), new_marker(), new_marker()
    r = oai(models_envoy, m1).chat.completions.create(model="llama-3", messages=[{"role": "user", "content": "echo:ok"}])
    assert r.choices[0].message.content == "ok"
    a = claude(models_envoy, m2).messages.create(model="llama-3", max_tokens=16,
                                                 messages=[{"role": "user", "content": "echo:ok"}])
    assert a.content[0].text == "ok"
    o = olla(models_envoy, m3).chat(model="llama-3", messages=[{"role": "user", "content": "echo:ok"}])
    assert o.message.content == "ok"
    for m in (m1, m2, m3):
        assert len(standin.received(m)) == 1
        assert_audit(models_envoy, m, "allowed", "default", ANONYMOUS, model="llama-3")


def test_a_group_rule_comes_first_for_its_members(models_envoy, standin):
    """The first rule whose identity fields fit decides: researchers may use mistral-*."""
    marker = new_marker()
    token = mint_token("rita", groups=["research"])
    o = olla(models_envoy, marker, token=token).chat(model="mistral-7b", messages=[{"role": "user", "content": "echo:ok"}])
    assert o.message.content == "ok"
    assert len(standin.received(marker)) == 1
    assert_audit(models_envoy, marker, "allowed", "default", {"source": "jwt", "subject": "rita", "groups": ["research"]}, model="mistral-7b")


def test_two_step_selection_chooses_the_policy_by_the_bodys_model(models_envoy, standin):
    """The same client (client certificate "chat"): gpt-4o selects `restricted` (which needs the
    certificate), llama-3 the default; without the certificate only gpt-4o is refused."""
    seen = {}
    for model in ("gpt-4o", "llama-3"):
        marker = new_marker()
        r = oai(models_envoy, marker, cert="chat").chat.completions.create(
            model=model, messages=[{"role": "user", "content": "echo:ok"}])
        assert r.choices[0].message.content == "ok"
        seen[model] = models_envoy.audit_for(marker)["policy"]
        assert models_envoy.audit_for(marker)["identity"] == CHAT_ID
    assert seen == {"gpt-4o": "restricted", "llama-3": "default"}
    marker = new_marker()
    r = oai(models_envoy, marker).chat.completions.create(model="llama-3", messages=[{"role": "user", "content": "echo:ok"}])
    assert r.choices[0].message.content == "ok"
    assert_audit(models_envoy, marker, "allowed", "default", ANONYMOUS)


# --- 6. admin endpoints, however the path is spelled ---------------------------------------------------

# The target as sent -> what the filter answers. Envoy's normalize_path/merge_slashes already turn
# `//`, `/./` and `/x/../` into /api/pull before the filter; `%2F` and case are the filter's own.
PATH_TRICKS = ["/api/pull", "//api/pull", "/api/./pull", "/%2Fapi%2Fpull", "/API/PULL", "/api/x/../pull",
               "/api/pull/", "/api%2fpull", "/../api/pull", "/a/%2e%2e/api/pull", "/api\\pull", "/Api/./PULL/"]
PULL_MESSAGE = "the administrative endpoint `ollama.pull` is not reachable through this gateway"


@pytest.mark.parametrize("path", PATH_TRICKS)
def test_an_admin_endpoint_is_refused_however_the_path_is_spelled(envoy, standin, path):
    marker = new_marker()
    status, headers, body = raw_request(envoy, "POST", f"{path}?t={marker}", {"model": "llama3", "stream": False})
    assert (status, json.loads(body)) == (403, {"error": {"message": PULL_MESSAGE, "type": "invalid_request_error",
                                                          "param": None, "code": "admin_endpoint"}}), body
    assert headers["x-inferguard"] == "refused"
    assert_audit(envoy, marker, "denied", "default", ANONYMOUS, "admin_endpoint", api="other")
    assert_nothing_upstream(marker, standin)


def test_curl_path_as_is_is_refused_too(envoy, standin):
    """curl without --path-as-is would squash the dot segments itself: this one sends them. Over
    HTTP/1.1: curl 7.88 over HTTP/2 sometimes reports a stream error (92) for an early local reply
    to a request whose body it is still sending (Envoy answered 403; the access log says so)."""
    marker = new_marker()
    r = subprocess.run(["curl", "-sS", "--http1.1", "--path-as-is", "--cacert", CA, "-o", "-", "-w", "\n%{http_code}",
                        "-H", "content-type: application/json", "--data-binary", '{"model":"llama3"}',
                        f"{envoy.base}/api/x/../../api/./pull?t={marker}"], capture_output=True, text=True, timeout=30)
    body, _, status = r.stdout.rpartition("\n")
    assert status == "403", r
    assert json.loads(body)["error"]["code"] == "admin_endpoint"
    assert_audit(envoy, marker, "denied", "default", ANONYMOUS, "admin_endpoint")
    assert_nothing_upstream(marker, standin)


@pytest.mark.parametrize("path", ["/api%5cpull", "/api%5Cpull"])
def test_a_path_the_classifier_cannot_read_is_400_malformed_path(envoy, standin, path):
    """An encoded backslash (some servers read it as `/`): refused as unreadable, before any policy.
    A raw backslash never reaches the filter as such: Envoy's normalize_path turns it into `/`, and
    the filter then judges /api/pull (403 admin_endpoint, above)."""
    marker = new_marker()
    before = len(envoy.audit_records())
    status, _, body = raw_request(envoy, "POST", f"{path}?t={marker}", {"model": "llama3"})
    assert (status, json.loads(body)) == (400, {"error": {
        "message": "the request path cannot be read: the path has a backslash", "type": "invalid_request_error",
        "param": None, "code": "malformed_path"}}), body
    # The log's request line shows no path it could not read ("-"): the record is the next one.
    records = []

    def logged():
        records[:] = envoy.audit_records()[before:]
        return bool(records)
    wait_for(logged, 5, "the audit record")
    [(head, audit)] = records
    line = json.loads(head)
    assert (line["method"], line["path"], line["protocol"], line["response_code"]) == ("POST", "-", "HTTP/1.1", 400)
    assert (audit["decision"], audit["reason"], audit["identity"]) == ("denied", "malformed_path", ANONYMOUS)
    assert_nothing_upstream(marker, standin)


def test_another_non_inference_path_is_endpoint_not_allowed(envoy, standin):
    marker = new_marker()
    status, _, body = raw_request(envoy, "GET", f"/v1/files/file-1/content?t={marker}")
    assert (status, json.loads(body)["error"]["code"]) == (403, "endpoint_not_allowed")
    assert_audit(envoy, marker, "denied", "default", ANONYMOUS, "endpoint_not_allowed")
    assert_nothing_upstream(marker, standin)


@pytest.mark.parametrize("path", ["/api/pull", "//api/pull", "/%2Fapi%2Fpull", "/API/PULL"])
def test_a_policy_naming_ollama_pull_lets_it_through_as_judged(ident_envoy, standin, path):
    """The batch workload's policy allows `ollama.pull`: the stand-in receives it, at the normal
    form the filter judged (whatever the spelling)."""
    marker = new_marker()
    status, _, body = raw_request(ident_envoy, "POST", f"{path}?t={marker}", {"model": "llama3", "stream": False},
                                  cert="batch")
    assert status == 404, body  # the stand-in's own answer: it serves no /api/pull
    [rec] = standin.received(marker)
    assert rec["path"] == f"/api/pull?t={marker}"
    assert_audit(ident_envoy, marker, "allowed", "batch", BATCH_ID, api="other")


# --- 7. request size -----------------------------------------------------------------------------------

BIG = "echo:" + "lorem ipsum " * 350  # about 4 KB of prompt


def test_a_prompt_over_the_policys_max_body_bytes_gets_413_in_the_apis_shape(size_envoy, standin):
    token = mint_token("intern-7")
    marker = new_marker()
    with pytest.raises(openai.APIStatusError) as e:
        oai(size_envoy, marker, token=token).chat.completions.create(model="m", messages=[{"role": "user", "content": BIG}])
    assert e.value.status_code == 413
    assert e.value.code == "request_too_large"
    assert e.value.body["type"] == "invalid_request_error"
    message = e.value.body["message"]
    assert "1024" in message
    assert_audit(size_envoy, marker, "blocked", "small-prompts", {"source": "jwt", "subject": "intern-7"},
                 "request_too_large")
    assert_nothing_upstream(marker, standin)

    marker = new_marker()
    with pytest.raises(anthropic.APIStatusError) as e:
        claude(size_envoy, marker, token=token).messages.create(model="m", max_tokens=16,
                                                               messages=[{"role": "user", "content": BIG}])
    assert e.value.status_code == 413
    assert e.value.body == anthropic_error("request_too_large", message)
    assert_nothing_upstream(marker, standin)

    marker = new_marker()
    with pytest.raises(ollama.ResponseError) as e:
        olla(size_envoy, marker, token=token).chat(model="m", messages=[{"role": "user", "content": BIG}])
    assert (e.value.status_code, e.value.error) == (413, message)
    assert_nothing_upstream(marker, standin)


def test_the_same_prompt_passes_under_the_default_limit(size_envoy, standin):
    marker = new_marker()
    r = oai(size_envoy, marker, token=mint_token("alice")).chat.completions.create(
        model="m", messages=[{"role": "user", "content": BIG}])
    assert r.choices[0].message.content == BIG[len("echo:"):]
    assert len(standin.received(marker)) == 1
    assert_audit(size_envoy, marker, "allowed", "default", {"source": "jwt", "subject": "alice"})


# --- 8. forged identity headers ------------------------------------------------------------------------

FORGED = {
    "x-user": "admin",
    "x-forwarded-client-cert": f'By=spiffe://cluster.local/ns/gw/sa/envoy;URI={CLIENT_IDS["batch"]}',
    "x-jwt-payload": "eyJzdWIiOiJhZG1pbiIsImdyb3VwcyI6WyJyZXNlYXJjaCJdfQ",  # {"sub":"admin","groups":["research"]}
    "x-spiffe-id": CLIENT_IDS["batch"],
    "x-forwarded-user": "admin",
}


def test_forged_identity_headers_are_anonymous(ident_envoy, standin):
    marker = new_marker()
    with client(headers=FORGED) as c:
        r = c.post(f"{ident_envoy.base}/v1/chat/completions?t={marker}", json=chat())
    assert r.status_code == 200, r.text
    assert len(standin.received(marker)) == 1
    assert_audit(ident_envoy, marker, "allowed", "default", ANONYMOUS)


def test_forged_identity_headers_do_not_unlock_the_privileged_policies(ident_envoy, standin):
    """The batch SPIFFE id and the `admin` subject would open /api/pull: forged, they open nothing."""
    marker = new_marker()
    status, _, body = raw_request(ident_envoy, "POST", f"/api/pull?t={marker}", {"model": "llama3"}, headers=FORGED)
    assert (status, json.loads(body)["error"]["code"]) == (403, "admin_endpoint"), body
    assert_audit(ident_envoy, marker, "denied", "default", ANONYMOUS, "admin_endpoint")
    assert_nothing_upstream(marker, standin)


def test_forged_identity_headers_do_not_satisfy_require_identity(ident_envoy, standin):
    marker = new_marker()
    with client(headers=FORGED) as c:
        r = c.post(f"{ident_envoy.base}/v1/responses?t={marker}", json={"model": "m", "input": "hi"})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == 'Bearer realm="inferguard"'
    assert r.json() == openai_error(401, "identity_required", "authentication is required: send a bearer token")
    assert_audit(ident_envoy, marker, "denied", "members", ANONYMOUS, "identity_required")
    assert_nothing_upstream(marker, standin)


# --- 9. JWT and SPIFFE identities select policies ------------------------------------------------------

def test_a_jwt_group_selects_its_policy(ident_envoy, standin):
    token = mint_token("rita", groups=["research", "eng"])
    marker = new_marker()
    r = oai(ident_envoy, marker, token=token).chat.completions.create(
        model="llama-3", messages=[{"role": "user", "content": "echo:ok"}])
    assert r.choices[0].message.content == "ok"
    assert_audit(ident_envoy, marker, "allowed", "research", {"source": "jwt", "subject": "rita", "groups": ["research", "eng"]})
    # The policy's own model rule applies to its members.
    marker = new_marker()
    with pytest.raises(openai.PermissionDeniedError) as e:
        oai(ident_envoy, marker, token=token).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_allowed"
    assert_audit(ident_envoy, marker, "denied", "research", {"source": "jwt", "subject": "rita", "groups": ["research", "eng"]},
                 "model_not_allowed")
    assert_nothing_upstream(marker, standin)


def test_a_spiffe_id_selects_its_policy(ident_envoy, standin):
    marker = new_marker()
    r = oai(ident_envoy, marker, cert="batch").chat.completions.create(
        model="m", messages=[{"role": "user", "content": "echo:ok"}])
    assert r.choices[0].message.content == "ok"
    assert_audit(ident_envoy, marker, "allowed", "batch", BATCH_ID)
    # Another workload's certificate is another SPIFFE id: not the batch policy.
    marker = new_marker()
    oai(ident_envoy, marker, cert="chat").chat.completions.create(model="m", messages=[{"role": "user", "content": "echo:ok"}])
    assert_audit(ident_envoy, marker, "allowed", "default", CHAT_ID)


def test_a_subject_selects_its_policy(ident_envoy, standin):
    marker = new_marker()
    status, _, _ = raw_request(ident_envoy, "POST", f"/api/pull?t={marker}", {"model": "llama3"},
                               headers={"authorization": f"Bearer {mint_token('admin')}"})
    assert status == 404  # reached the stand-in
    assert len(standin.received(marker)) == 1
    assert_audit(ident_envoy, marker, "allowed", "admins", {"source": "jwt", "subject": "admin"})


# --- 10. upstream TLS ----------------------------------------------------------------------------------

def test_require_upstream_tls_passes_the_verified_tls_route(upstream_tls_envoy, standin):
    marker = new_marker()
    r = oai(upstream_tls_envoy, marker).chat.completions.create(model="m", messages=[{"role": "user", "content": "echo:ok"}])
    assert r.choices[0].message.content == "ok"
    [rec] = standin.received(marker)
    assert (rec["tls"], rec["sni"]) == (True, "upstream.inferguard.test")
    assert_audit(upstream_tls_envoy, marker, "allowed", "default", ANONYMOUS, route="default")


def test_require_upstream_tls_refuses_the_plaintext_route_before_sending(upstream_tls_envoy, standin, plain_standin):
    marker = new_marker()
    with pytest.raises(openai.InternalServerError) as e:
        oai(upstream_tls_envoy, marker, headers={"host": LEGACY_HOST}).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
    assert e.value.body == openai_error(
        502, "upstream_not_encrypted", "this route's upstream is not encrypted, and the policy requires it to be")["error"]
    assert_audit(upstream_tls_envoy, marker, "denied", "default", ANONYMOUS, "upstream_not_encrypted",
                 route="legacy-plaintext")
    assert_nothing_upstream(marker, plain_standin, standin)


def test_without_the_requirement_the_plaintext_route_works(envoy, standin, plain_standin):
    marker = new_marker()
    r = oai(envoy, marker, headers={"host": LEGACY_HOST}).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "echo:ok"}])
    assert r.choices[0].message.content == "ok"
    [rec] = plain_standin.received(marker)
    assert rec["tls"] is False
    assert_nothing_upstream(marker, standin)
    assert_audit(envoy, marker, "allowed", "default", ANONYMOUS, route="legacy-plaintext")


# --- 11. invalid tokens ----------------------------------------------------------------------------------

INVALID = {
    "expired": (lambda: mint_token("bob", scopes=["inference"], exp_in=-3600), "the token has expired"),
    "wrong-issuer": (lambda: mint_token("bob", scopes=["inference"], iss="https://issuer.evil.test"),
                     "the token's issuer is not trusted"),
    "other-key": (lambda: mint_token("bob", scopes=["inference"], key="jwt-other"),
                  "the token's signature does not verify"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_token_is_refused_with_401(scopes_envoy, standin, case):
    make, why = INVALID[case]
    marker = new_marker()
    with pytest.raises(openai.AuthenticationError) as e:
        oai(scopes_envoy, marker, token=make()).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.body == openai_error(401, "invalid_token", f"the bearer token was refused: {why}")["error"]
    assert e.value.response.headers["www-authenticate"] == f'Bearer error="invalid_token", error_description="{why}"'
    assert_audit(scopes_envoy, marker, "denied", "default", ANONYMOUS, "invalid_token")
    assert_nothing_upstream(marker, standin)


def test_an_invalid_token_is_refused_even_where_anonymous_callers_pass(envoy, standin):
    """The default policy lets anonymous callers through, but a token that was presented and failed
    is refused: it is never downgraded to anonymous."""
    marker = new_marker()
    with pytest.raises(anthropic.AuthenticationError) as e:
        claude(envoy, marker, token=mint_token("bob", key="jwt-other")).messages.create(
            model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.body == anthropic_error("authentication_error",
                                           "the bearer token was refused: the token's signature does not verify")
    assert_audit(envoy, marker, "denied", "default", ANONYMOUS, "invalid_token", api="anthropic.messages")
    assert_nothing_upstream(marker, standin)


def test_an_api_key_is_anonymous_and_passes_without_require_identity(envoy, standin):
    marker = new_marker()
    r = oai(envoy, marker, token="sk-test").chat.completions.create(model="m", messages=[{"role": "user", "content": "echo:ok"}])
    assert r.choices[0].message.content == "ok"
    [rec] = standin.received(marker)
    # Not a JWT: jwt_authn leaves it in place, for the upstream it was meant for.
    assert [v for k, v in rec["headers"] if k.lower() == "authorization"] == ["Bearer sk-test"]
    assert_audit(envoy, marker, "allowed", "default", ANONYMOUS)
