"""Browser-facing policy in the real Envoy, with raw requests (any Origin a non-browser can write):
preflights answered by the filter, the bypass origins, credentials, `Vary: Origin`, the upstream's
CORS and stack headers replaced, and the security headers on every kind of response.

The browser itself (what a page's script can read) is tests/e2e/test_browser.py.
"""
import json
import uuid

import httpx
import pytest

from harness import b64, client, raw_spec

APP = "https://app.example.com"
POLICY = {
    "cors": {"allowed_origins": [APP, "https://*.example.org"], "allowed_headers": ["content-type", "x-trace"],
             "expose_headers": ["x-request-id"], "max_age": 300},
    "headers": {"strip": ["x-vllm-*"]},
    "policies": [
        # Credentials, for one exact origin (a wildcard with credentials is refused at load).
        {"name": "creds", "match": {"paths": ["/v1/messages"]},
         "cors": {"allowed_origins": [APP], "allow_credentials": True}},
        # A refused origin is served, without CORS headers.
        {"name": "lenient", "match": {"paths": ["/v1/completions"]},
         "cors": {"allowed_origins": [APP], "on_refused_origin": "omit_headers"}},
        {"name": "auth", "match": {"paths": ["/v1/embeddings"]}, "admission": {"require_identity": True}},
        {"name": "small", "match": {"paths": ["/v1/responses"]}, "request": {"max_body_bytes": 1024}},
        {"name": "strict", "match": {"paths": ["/api/generate"]}, "request": {"mode": "block"}},
        # Security headers overridden, turned off and added; inherits the default's cors.
        {"name": "framed", "match": {"paths": ["/api/chat"]},
         "headers": {"security": {"X-Frame-Options": None, "Content-Security-Policy": "frame-ancestors https://app.example.com",
                                  "Permissions-Policy": "camera=()"}}},
    ],
}
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "strict-transport-security": "max-age=31536000",
}
STACK = ("server", "x-powered-by", "x-envoy-upstream-service-time")
PROMPT = {"model": "m", "messages": [{"role": "user", "content": b64("mail jane.doe@acme-corp.com")}]}


@pytest.fixture(scope="module")
def cors_envoy(make_envoy):
    return make_envoy(json.dumps(POLICY))


def cors_headers(r) -> dict:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def send(e, method, path, origin=None, headers=(), **kw):
    """One request through Envoy over HTTP/1.1; the marker in the query finds its audit record."""
    marker = uuid.uuid4().hex
    h = dict(headers)
    if origin is not None:
        h["origin"] = origin
    with client() as c:
        r = c.request(method, f"{e.base}{path}?t={marker}", headers=h, **kw)
    return r, marker


def preflight(e, origin, method="POST", request_headers=None, path="/v1/chat/completions"):
    h = {"access-control-request-method": method}
    if request_headers is not None:
        h["access-control-request-headers"] = request_headers
    return send(e, "OPTIONS", path, origin, h)


def assert_secure(r, tls=True):
    for k, v in SECURITY.items():
        assert r.headers.get(k) == v, (r.status_code, k, dict(r.headers))
    for k in STACK:
        assert k not in r.headers, (r.status_code, k, dict(r.headers))
    assert "origin" in [v.strip().lower() for v in r.headers.get("vary", "").split(",")], dict(r.headers)


# --- preflights ----------------------------------------------------------------------------------

ALLOWED_PREFLIGHT = {
    "access-control-allow-origin": APP,
    "access-control-allow-methods": "GET, POST",
    "access-control-allow-headers": "content-type, x-trace",
    "access-control-max-age": "300",
}


@pytest.mark.parametrize("origin,method,req_headers,allowed", [
    (APP, "POST", "content-type", APP),
    (APP, "GET", "content-type,x-trace", APP),
    ("https://APP.example.com", "POST", None, APP),
    ("https://app.example.com:443", "POST", None, APP),
    ("https://chat.example.org", "POST", "x-trace", "https://chat.example.org"),
    ("https://a.b.example.org", "POST", None, "https://a.b.example.org"),
    (APP, "DELETE", None, "cors_method"),
    (APP, "POST", "content-type,x-api-key", "cors_headers"),
    ("https://app.example.com.evil.net", "POST", None, "cors_origin"),
    ("https://evilexample.com", "POST", None, "cors_origin"),
    ("https://evil-app.example.com.attacker.io", "POST", None, "cors_origin"),
    ("https://example.org", "POST", None, "cors_origin"),
    ("https://example.org.evil.net", "POST", None, "cors_origin"),
    ("https://app.example.com:8443", "POST", None, "cors_origin"),
    ("http://app.example.com", "POST", None, "cors_origin"),
    ("https://app.example.com/", "POST", None, "cors_origin"),
    ("https://app.example.com.", "POST", None, "cors_origin"),
    ("https://user@app.example.com", "POST", None, "cors_origin"),
    ("null", "POST", None, "cors_origin"),
])
def test_a_preflight_is_answered_by_the_filter(cors_envoy, standin, origin, method, req_headers, allowed):
    r, marker = preflight(cors_envoy, origin, method, req_headers)
    audit = cors_envoy.audit_for(marker)
    assert audit["cors"] == "preflight"
    assert standin.received(marker) == []  # never reaches the model
    assert_secure(r)
    assert r.headers["vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    if allowed.startswith("cors_"):
        assert r.status_code == 403, r.text
        assert cors_headers(r) == {}
        assert (audit["decision"], audit["reason"]) == ("denied", allowed)
        assert r.json()["error"]["code"] == allowed
    else:
        assert r.status_code == 204, r.text
        assert r.content == b""
        assert cors_headers(r) == {**ALLOWED_PREFLIGHT, "access-control-allow-origin": allowed}
        assert audit["decision"] == "allowed" and "reason" not in audit


def test_a_preflight_takes_the_policy_of_its_path_with_credentials(cors_envoy):
    r, _ = preflight(cors_envoy, APP, path="/v1/messages", request_headers="content-type")
    assert r.status_code == 204
    assert cors_headers(r) == {"access-control-allow-origin": APP, "access-control-allow-credentials": "true",
                               "access-control-allow-methods": "GET, POST",
                               "access-control-allow-headers": "authorization, content-type",
                               "access-control-max-age": "600"}
    r, _ = preflight(cors_envoy, "https://chat.example.org", path="/v1/messages")
    assert (r.status_code, cors_headers(r)) == (403, {})


# --- actual requests -----------------------------------------------------------------------------

@pytest.mark.parametrize("origin,allowed", [
    (None, None),
    (APP, APP),
    ("https://APP.EXAMPLE.COM", APP),
    ("https://app.example.com:443", APP),
    ("https://x.example.org", "https://x.example.org"),
    ("https://app.example.com.evil.net", "refused"),
    ("https://evilexample.com", "refused"),
    ("https://example.org", "refused"),
    ("https://x.example.org:8443", "refused"),
    ("http://app.example.com", "refused"),
    ("http://app.example.com:443", "refused"),
    ("null", "refused"),
    ("https://app.example.com/", "refused"),
    ("https://evil.test", "refused"),
])
def test_an_actual_request_is_served_to_allowed_origins_only(cors_envoy, standin, origin, allowed):
    r, marker = send(cors_envoy, "POST", "/v1/chat/completions", origin, json=PROMPT)
    audit = cors_envoy.audit_for(marker)
    assert_secure(r)
    assert r.headers["vary"] == "Origin"
    if allowed == "refused":
        assert r.status_code == 403, r.text
        assert cors_headers(r) == {}
        assert (audit["decision"], audit["reason"], audit["cors"]) == ("denied", "cors_origin", "refused")
        assert standin.received(marker) == []
        return
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "mail [REDACTED:EMAIL]"
    if allowed is None:
        assert cors_headers(r) == {} and "cors" not in audit
    else:
        assert cors_headers(r) == {"access-control-allow-origin": allowed, "access-control-expose-headers": "x-request-id"}
        assert audit["cors"] == "allowed"


def test_the_same_origin_is_not_a_cross_origin_call(cors_envoy):
    r, _ = send(cors_envoy, "POST", "/v1/chat/completions", f"https://localhost:{cors_envoy.https_port}", json=PROMPT)
    assert r.status_code == 200 and cors_headers(r) == {}


def test_credentials_are_allowed_only_where_the_policy_says(cors_envoy):
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "echo:hi"}]}
    r, _ = send(cors_envoy, "POST", "/v1/messages", APP, json=body)
    assert r.status_code == 200, r.text
    assert cors_headers(r) == {"access-control-allow-origin": APP, "access-control-allow-credentials": "true"}
    r, _ = send(cors_envoy, "POST", "/v1/chat/completions", APP, json=PROMPT)
    assert "access-control-allow-credentials" not in r.headers


def test_omit_headers_serves_a_refused_origin_without_cors_headers(cors_envoy, standin):
    spec = raw_spec('{"choices":[{"text":"ok"}]}', "application/json",
                    headers=[["access-control-allow-origin", "*"], ["access-control-allow-credentials", "true"]])
    r, marker = send(cors_envoy, "POST", "/v1/completions", "https://evil.test", headers=spec, json={"model": "m"})
    assert r.status_code == 200 and r.json() == {"choices": [{"text": "ok"}]}
    assert cors_headers(r) == {}
    assert_secure(r)
    assert cors_envoy.audit_for(marker)["cors"] == "withheld"
    assert len(standin.received(marker)) == 1


# --- what the upstream says is replaced ----------------------------------------------------------

UPSTREAM_HEADERS = [
    ["access-control-allow-origin", "*"],
    ["access-control-allow-credentials", "true"],
    ["access-control-allow-methods", "*"],
    ["access-control-expose-headers", "*"],
    ["x-powered-by", "vLLM/0.9"],
    ["x-vllm-version", "0.9.1"],
    ["x-vllm-engine", "v1"],
    ["x-request-id", "req-7"],
    ["vary", "Accept-Encoding"],
    ["cache-control", "public, max-age=3600"],
    ["x-frame-options", "ALLOWALL"],
]


@pytest.mark.parametrize("origin,want_cors", [
    (APP, {"access-control-allow-origin": APP, "access-control-expose-headers": "x-request-id"}),
    (None, {}),
])
def test_upstream_cors_and_stack_headers_are_removed_and_replaced(cors_envoy, origin, want_cors):
    spec = raw_spec('{"choices":[]}', "application/json", headers=UPSTREAM_HEADERS)
    r, _ = send(cors_envoy, "POST", "/v1/chat/completions", origin, headers=spec, json=PROMPT)
    assert r.status_code == 200, r.text
    assert cors_headers(r) == want_cors
    assert_secure(r)
    assert not [k for k in r.headers if k.startswith("x-vllm-")]
    assert r.headers["x-request-id"] == "req-7"
    assert r.headers["vary"] == "Accept-Encoding, Origin"


def test_the_stack_headers_are_envoys_and_the_upstreams_and_the_filter_removes_them(make_envoy, standin):
    """Without inferguard, the client sees the upstream's `server` (PASS_THROUGH) and the router's
    x-envoy-upstream-service-time: the filter sees both, so it can remove them."""
    bare = make_envoy("", bare=True)
    spec = raw_spec("{}", "application/json", headers=[["x-powered-by", "vLLM"]])
    r, _ = send(bare, "POST", "/v1/chat/completions", headers=spec, json=PROMPT)
    assert r.headers["server"].startswith("standin/")  # the stand-in's, passed through
    assert "x-envoy-upstream-service-time" in r.headers and r.headers["x-powered-by"] == "vLLM"
    assert "strict-transport-security" not in r.headers


def test_a_policy_overrides_turns_off_and_adds_security_headers(cors_envoy):
    r, _ = send(cors_envoy, "POST", "/api/chat", APP, json={"model": "m", "stream": False,
                                                            "messages": [{"role": "user", "content": "echo:hi"}]})
    assert r.status_code == 200, r.text
    assert "x-frame-options" not in r.headers
    assert r.headers["content-security-policy"] == "frame-ancestors https://app.example.com"
    assert r.headers["permissions-policy"] == "camera=()"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["access-control-allow-origin"] == APP  # the default's cors, inherited


# --- every response carries the security headers -------------------------------------------------

def every_response(e):
    """(name, response) for each kind of answer a client can get from the filter's listener."""
    big = {"model": "m", "input": "x" * 4096}
    rows = [
        ("upstream 200", send(e, "POST", "/v1/chat/completions", APP, json=PROMPT), 200),
        ("upstream 200, streamed", send(e, "POST", "/v1/chat/completions", APP, json={**PROMPT, "stream": True}), 200),
        ("upstream 500", send(e, "POST", "/v1/chat/completions", APP,
                              headers=raw_spec("Internal Server Error", "text/plain", status=500), json=PROMPT), 500),
        ("upstream 200, no body", send(e, "POST", "/v1/chat/completions", APP,
                                       headers=raw_spec(b"", None, content_length=True), json=PROMPT), 200),
        ("502 malformed answer", send(e, "POST", "/v1/chat/completions", APP,
                                      headers=raw_spec('{"a":', "application/json"), json=PROMPT), 502),
        ("preflight 204", preflight(e, APP), 204),
        ("preflight 403", preflight(e, "https://evil.test"), 403),
        ("403 cors_origin", send(e, "POST", "/v1/chat/completions", "https://evil.test", json=PROMPT), 403),
        ("401 identity_required", send(e, "POST", "/v1/embeddings", APP, json={"model": "m", "input": "x"}), 401),
        ("403 admin_endpoint", send(e, "POST", "/api/pull", APP, json={"model": "m"}), 403),
        ("400 malformed_path", send(e, "GET", "/v1/%252e%252e/x", APP), 400),
        ("413 request_too_large", send(e, "POST", "/v1/responses", APP, json=big), 413),
        ("403 blocked", send(e, "POST", "/api/generate", APP, json={"model": "m", "prompt": "mail jane@x.io"}), 403),
    ]
    return [(name, r, want) for name, (r, _), want in rows]


def test_every_response_carries_the_security_headers(cors_envoy):
    for name, r, want in every_response(cors_envoy):
        assert r.status_code == want, (name, r.status_code, r.text)
        assert_secure(r)
        allowed = r.headers.get("access-control-allow-origin")
        # A caller the policy allows can read every answer, errors included; a refused one none.
        assert allowed == (None if name in ("preflight 403", "403 cors_origin") else APP), (name, dict(r.headers))


def test_http2_responses_carry_them_too(cors_envoy):
    with client(http2=True) as c:
        r = c.post(f"{cors_envoy.base}/v1/chat/completions", json=PROMPT, headers={"origin": APP})
        p = c.options(f"{cors_envoy.base}/v1/chat/completions",
                      headers={"origin": APP, "access-control-request-method": "POST"})
    assert (r.http_version, r.status_code, p.status_code) == ("HTTP/2", 200, 204)
    assert_secure(r)
    assert_secure(p)


def test_a_wildcard_with_credentials_is_refused_at_load(workdir, standin):
    from harness import envoy_validate
    bad = {"policies": [{"name": "a", "cors": {"allowed_origins": ["https://*.example.com"], "allow_credentials": True}}]}
    code, out = envoy_validate(workdir, standin.address, json.dumps(bad))
    assert code != 0
    assert "policies[0].cors.allowed_origins[0]: a wildcard origin or `null` cannot be combined with `allow_credentials: true`" in out


def test_the_routers_own_reply_passes_the_filter_and_carries_them(make_envoy):
    """Nothing listens on the upstream's port: the router answers 503 itself, through the filter."""
    from harness import free_port
    e = make_envoy(json.dumps(POLICY), upstream=f"127.0.0.1:{free_port()}")
    r, _ = send(e, "POST", "/v1/chat/completions", APP, json=PROMPT)
    assert r.status_code == 503, r.text
    assert_secure(r)
    assert r.headers["access-control-allow-origin"] == APP
