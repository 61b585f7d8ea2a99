"""The Envoy side of named policies and admission, proved with the current filter.

TLS on both legs (the default route's upstream is verified, a plaintext route exists for tests of
the refusal), optional mTLS with SPIFFE ids, and jwt_authn in front of inferguard: what it leaves in
dynamic metadata (where the filter reads identity) for every kind of token, seen through the
access log.
"""
import base64
import json
import re
import subprocess
import sys
import urllib.request
import uuid

import httpx
import pytest

from harness import CA, CLIENT_IDS, CERTS, LEGACY_HOST, ROOT, Envoy, Standin, client, mint_token, stat

CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo:fine"}]}


def openssl_self_signed(tmp_path, name: str, san: str, eku: str):
    """A throwaway self-signed certificate (no CA of ours signed it): (crt, key) paths."""
    crt, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName={san}", "-addext", f"extendedKeyUsage={eku}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return str(crt), str(key)


@pytest.fixture(scope="module")
def jwt_envoy(make_envoy):
    """The default policy, with jwt_authn's whole dynamic metadata in the access log."""
    return make_envoy("", log_jwt_metadata=True)


# --- the upstream legs ---------------------------------------------------------------------------

def test_the_default_route_reaches_the_upstream_over_verified_tls(envoy, standin, plain_standin):
    marker = uuid.uuid4().hex
    with client() as c:
        r = c.post(f"{envoy.base}/v1/chat/completions?t={marker}", json=CHAT)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "fine"
    [rec] = standin.received(marker)
    assert rec["path"] == f"/v1/chat/completions?t={marker}"
    # Envoy asked for the name the upstream's certificate carries, and negotiated TLS 1.3.
    assert (rec["tls"], rec["tls_version"], rec["sni"]) == (True, "TLSv1.3", "upstream.inferguard.test")
    assert plain_standin.received(marker) == []
    assert envoy.log_field(marker, "route") == "default"
    assert envoy.log_field(marker, "upstream_host") == standin.address
    assert stat(envoy, "cluster.inference_upstream.ssl.handshake") >= 1


def test_the_legacy_route_reaches_the_plaintext_upstream(envoy, standin, plain_standin):
    """Chosen by the Host (virtual host `legacy`), the path unchanged: the upstream is sent exactly
    the path the filter judged (a prefix_rewrite would be applied by the router, after the filter)."""
    marker = uuid.uuid4().hex
    with client(headers={"host": LEGACY_HOST}) as c:
        r = c.post(f"{envoy.base}/v1/chat/completions?t={marker}", json=CHAT)
    assert r.status_code == 200, r.text
    [rec] = plain_standin.received(marker)
    assert rec["path"] == f"/v1/chat/completions?t={marker}"
    assert [v for k, v in rec["headers"] if k.lower() == "host"] == [LEGACY_HOST]
    assert (rec["tls"], rec["tls_version"], rec["sni"]) == (False, None, None)
    assert standin.received(marker) == []
    assert envoy.log_field(marker, "route") == "legacy-plaintext"
    assert envoy.log_field(marker, "upstream_host") == plain_standin.address


def test_each_cluster_says_whether_it_is_encrypted(envoy):
    """What the filter reads as xds.cluster_metadata.filter_metadata.inferguard.upstream_tls, and the
    transport socket that makes it true."""
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/config_dump?resource=static_clusters") as r:
        dump = json.loads(r.read())
    clusters = {c["cluster"]["name"]: c["cluster"] for c in dump["configs"]}
    assert set(clusters) == {"inference_upstream", "legacy_plaintext"}
    meta = {n: c["metadata"]["filter_metadata"]["inferguard"] for n, c in clusters.items()}
    assert meta == {"inference_upstream": {"upstream_tls": True}, "legacy_plaintext": {"upstream_tls": False}}
    tls = clusters["inference_upstream"]["transport_socket"]["typed_config"]
    assert tls["sni"] == "upstream.inferguard.test"
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "upstream.inferguard.test"}}]
    assert "transport_socket" not in clusters["legacy_plaintext"]


@pytest.mark.parametrize("case", ["name-not-in-certificate", "unknown-ca"])
def test_envoy_refuses_an_upstream_whose_certificate_does_not_verify(workdir, plain_standin, tmp_path, case):
    """503 before a byte of the request is sent: the upstream never sees the prompt."""
    if case == "name-not-in-certificate":
        # Signed by our CA, but for localhost: not upstream.inferguard.test.
        bad = Standin(workdir, cert=(f"{CERTS}/server.crt", f"{CERTS}/server.key"))
        counter = "fail_verify_san"
    else:
        crt, key = openssl_self_signed(tmp_path, "impostor", "DNS:upstream.inferguard.test,IP:127.0.0.1", "serverAuth")
        bad = Standin(workdir, cert=(crt, key), ca=crt)
        counter = "fail_verify_error"
    e = Envoy(workdir, bad.address, "", plain_upstream=plain_standin.address)
    try:
        marker = uuid.uuid4().hex
        with client() as c:
            r = c.post(f"{e.base}/v1/chat/completions?t={marker}", json=CHAT)
        assert r.status_code == 503, r.text
        assert r.text.startswith("upstream connect error"), r.text
        assert bad.received(marker) == []
        assert e.log_field(marker, "route") == "default"
        assert "UF" in e.log_field(marker, "response_flags")
        assert stat(e, f"cluster.inference_upstream.ssl.{counter}") >= 1
        assert stat(e, "cluster.inference_upstream.ssl.handshake") == 0
    finally:
        e.stop()
        bad.stop()


def test_bare_keeps_jwt_authn_and_drops_only_inferguard(tmp_path):
    """The benchmark's bare Envoy differs from the filtered one by the wasm filter alone."""
    def render(*extra):
        out = subprocess.run([sys.executable, "envoy/render.py", "--certs", CERTS, "--upstream", "127.0.0.1:9",
                              "--config", "envoy/inferguard.json", *extra], check=True, capture_output=True,
                             text=True, cwd=ROOT).stdout
        return out
    full, bare = render(), render("--bare")
    assert "envoy.filters.http.wasm" in full and "envoy.filters.http.wasm" not in bare
    assert "envoy.filters.http.jwt_authn" in bare
    # Without the filter there is no record: the JSON line says null.
    assert re.sub(r"\n *# BEGIN inferguard\n.*?# END inferguard\n", "\n", full, flags=re.S).replace(
        "%FILTER_STATE(wasm.inferguard.audit:PLAIN)%", "null") == bare
    plain = render("--upstream-plaintext", "--bare")
    assert "UpstreamTlsContext" not in plain and "upstream_tls: false" in plain


# --- client certificates ---------------------------------------------------------------------------

@pytest.mark.parametrize("who", ["chat", "batch", None])
def test_a_client_certificate_from_the_ca_is_accepted_and_names_the_peer(envoy, standin, who):
    marker = uuid.uuid4().hex
    with client(cert=who) as c:
        r = c.post(f"{envoy.base}/v1/chat/completions?t={marker}", json=CHAT)
    assert r.status_code == 200, r.text
    assert len(standin.received(marker)) == 1
    # %DOWNSTREAM_PEER_URI_SAN%: what the filter reads as connection.uri_san_peer_certificate.
    assert envoy.log_field(marker, "peer") == (CLIENT_IDS[who] if who else "-")


def test_a_client_certificate_from_another_ca_is_refused_at_the_handshake(envoy, standin, tmp_path):
    crt, key = openssl_self_signed(tmp_path, "rogue", f"URI:{CLIENT_IDS['chat']}", "clientAuth")
    listener = f"listener.127.0.0.1_{envoy.https_port}.ssl.fail_verify_error"
    before = stat(envoy, listener)
    marker = uuid.uuid4().hex
    with pytest.raises(httpx.TransportError):
        with client(cert=(crt, key)) as c:
            c.post(f"{envoy.base}/v1/chat/completions?t={marker}", json=CHAT)
    assert stat(envoy, listener) == before + 1
    assert standin.received(marker) == []
    assert not [h for h, _ in envoy.audit_records() if marker in h]


# --- tokens -----------------------------------------------------------------------------------------

FAILURES = {
    # case: (Authorization header value or None, jwt_authn's "failure" entry)
    "missing": (None, {"code": 1, "message": "Jwt is missing"}),
    "expired": (lambda: "Bearer " + mint_token("bob", exp_in=-3600), {"code": 3, "message": "Jwt is expired"}),
    "wrong-issuer": (lambda: "Bearer " + mint_token("carol", iss="https://issuer.evil.test"),
                     {"code": 24, "message": "Jwt issuer is not configured"}),
    "other-key": (lambda: "Bearer " + mint_token("dave", key="jwt-other"),
                  {"code": 26, "message": "Jwt verification fails"}),
    "wrong-audience": (lambda: "Bearer " + mint_token("erin", aud="someone-else"),
                       {"code": 25, "message": "Audiences in Jwt are not allowed"}),
    # What the OpenAI SDKs send: an API key is not a JWT, and jwt_authn says so.
    "api-key": (lambda: "Bearer sk-test",
                {"code": 4, "message": "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"}),
}


def test_a_valid_token_puts_its_claims_in_metadata_and_stays_out_of_the_upstream(jwt_envoy, standin):
    token = mint_token("alice", scopes=["chat:write", "models:read"], groups=["eng", "oncall"])
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    marker = uuid.uuid4().hex
    with client(token=token) as c:
        r = c.post(f"{jwt_envoy.base}/v1/chat/completions?t={marker}", json=CHAT)
    assert r.status_code == 200, r.text
    assert jwt_envoy.jwt_metadata(marker) == {"payload": claims}
    assert claims["scope"] == "chat:write models:read" and claims["groups"] == ["eng", "oncall"]
    # The verified subject is in the record (escaped), not printed raw by Envoy.
    assert jwt_envoy.audit_for(marker)["identity"] == {"source": "jwt", "subject": "alice", "groups": ["eng", "oncall"]}
    [rec] = standin.received(marker)
    # forward: false: a verified token is removed before the request goes upstream.
    assert [k for k, _ in rec["headers"] if k.lower() == "authorization"] == []


# What the filter answers when jwt_authn's failure code says a token was presented and refused
# (WWW-Authenticate's error_description, from src/policy/identity.rs).
REFUSED = {
    "expired": "the token has expired",
    "wrong-issuer": "the token's issuer is not trusted",
    "other-key": "the token's signature does not verify",
    "wrong-audience": "the token's audience is not allowed",
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_without_a_valid_token_the_request_reaches_the_filter_marked_as_failed(jwt_envoy, standin, case):
    """jwt_authn refuses nothing (allow_missing_or_failed): the filter sees why, and decides. A token
    that was presented and failed is refused (401 invalid_token, audited); a missing token, or an
    API key that is not a JWT, is an anonymous caller, which the default policy lets through."""
    header, failure = FAILURES[case]
    value = header() if header else None
    marker = uuid.uuid4().hex
    with client(headers={"authorization": value} if value else None) as c:
        r = c.post(f"{jwt_envoy.base}/v1/chat/completions?t={marker}", json=CHAT)
    assert jwt_envoy.jwt_metadata(marker) == {"failure": failure}
    audit = jwt_envoy.audit_for(marker)
    assert audit["identity"] == {"source": "anonymous"}
    assert (audit["policy"], audit["route"]) == ("default", "default")
    if case in REFUSED:
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == f'Bearer error="invalid_token", error_description="{REFUSED[case]}"'
        assert r.json() == {"error": {"message": f"the bearer token was refused: {REFUSED[case]}",
                                      "type": "invalid_request_error", "param": None, "code": "invalid_token"}}
        assert (audit["decision"], audit["reason"]) == ("denied", "invalid_token")
        assert standin.received(marker) == []
    else:
        assert r.status_code == 200, r.text
        [rec] = standin.received(marker)
        # What is not a verified token is not removed: an API key goes upstream as sent.
        assert [v for k, v in rec["headers"] if k.lower() == "authorization"] == ([value] if value else [])
        assert audit["decision"] == "allowed" and "reason" not in audit


def test_the_default_access_log_names_the_subject_but_not_the_claims(envoy):
    token = mint_token("alice", scopes=["secret-scope"])
    marker = uuid.uuid4().hex
    with client(token=token) as c:
        assert c.post(f"{envoy.base}/v1/chat/completions?t={marker}", json=CHAT).status_code == 200
    head = envoy.log_line(marker)
    assert envoy.audit_for(marker)["identity"] == {"source": "jwt", "subject": "alice"}
    assert "secret-scope" not in head and "jwt_authn=" not in head
