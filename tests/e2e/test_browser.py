"""CORS as a browser enforces it: Debian's Chromium, driven by Playwright (the system browser,
`executable_path`; Playwright downloads none), headless.

Two small pages are served by two local HTTP servers: one at `http://127.0.0.1:P1`, the origin
the policy allows, and one at `http://localhost:P2`, an origin it does not list. Each page's
script calls `fetch()` against the filter's TLS port: a simple request (no preflight), the same
with `credentials: 'include'`, and one with a custom header and a JSON content-type, which makes
the browser send a preflight first. The test asserts what the script could read: the allowed
page reads the redacted answer; the refused page gets `TypeError: Failed to fetch` and nothing
reaches the model.

Chromium has to accept the listener's certificate (signed by certs/ca.crt, which the browser
does not know): the context is opened with `ignore_https_errors=True`. That only skips
certificate verification for the connection; CORS is checked after, on the response's headers,
whatever the certificate, so it decides exactly as it would with a trusted one.

`make test` installs Debian's `chromium` when it is missing (`make browser`); set CHROMIUM to use
another Chromium or Chrome binary.
"""
import json
import os
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import b64, free_port, wait_for

ANSWER = "Write to jane.doe@acme-corp.com today."
PAGE = b"<!doctype html><meta charset=utf-8><title>inferguard browser test</title><p>page</p>"


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium: `make browser` installs Debian's chromium (as root), "
                    "or set CHROMIUM=/path/to/chromium")
    return path


class Page(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def pages():
    """Two page servers: the allowed origin and the refused one."""
    servers = []
    for _ in range(2):
        s = ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    allowed = f"http://127.0.0.1:{servers[0].server_address[1]}"
    refused = f"http://localhost:{servers[1].server_address[1]}"
    yield allowed, refused
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def browser_envoy(make_envoy, pages):
    allowed, _ = pages
    policy = {"cors": {"allowed_origins": [allowed], "allowed_methods": ["POST"],
                       "allowed_headers": ["content-type", "x-trace"], "allow_credentials": True}}
    return make_envoy(json.dumps(policy))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # tests/requirements.txt

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True, timeout=30_000)
        yield b
        b.close()


# The page's script: what it could read, or the error it got.
FETCH = """async ([url, body, mode]) => {
  const init = {method: 'POST', body, signal: AbortSignal.timeout(10000)};
  if (mode === 'credentials') { init.credentials = 'include'; init.headers = {'content-type': 'text/plain'}; }
  else if (mode === 'preflight') { init.headers = {'content-type': 'application/json', 'x-trace': '1'}; }
  else { init.headers = {'content-type': 'text/plain'}; }
  try {
    const r = await fetch(url, init);
    return {status: r.status, text: await r.text(), cors: r.headers.get('access-control-allow-origin')};
  } catch (e) {
    return {error: String(e)};
  }
}"""

MODES = ["simple", "credentials", "preflight"]


def run_fetch(browser, page_origin, envoy, mode):
    marker = uuid.uuid4().hex
    url = f"https://localhost:{envoy.https_port}/v1/chat/completions?t={marker}"
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": b64(ANSWER)}]})
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(page_origin + "/")
        result = page.evaluate(FETCH, [url, body, mode])
    finally:
        context.close()
    return marker, result


def records(envoy, marker):
    """The audit records of the requests carrying `marker` (a preflight and its request: two)."""
    return [(json.loads(h)["method"], a) for h, a in envoy.audit_records() if marker in h]


@pytest.mark.parametrize("mode", MODES)
def test_the_allowed_origin_reads_the_redacted_answer(browser, browser_envoy, pages, standin, mode):
    allowed, _ = pages
    marker, got = run_fetch(browser, allowed, browser_envoy, mode)
    assert "error" not in got, got
    assert got["status"] == 200, got
    content = json.loads(got["text"])["choices"][0]["message"]["content"]
    assert content == "Write to [REDACTED:EMAIL] today."
    assert "jane.doe" not in got["text"]
    # The script reads only the safelisted response headers (and those exposed): not this one.
    assert got["cors"] is None
    assert len(standin.received(marker)) == 1
    want = ["OPTIONS", "POST"] if mode == "preflight" else ["POST"]
    wait_for(lambda: [m for m, _ in records(browser_envoy, marker)] == want, 5, f"audit records {want}")
    for method, audit in records(browser_envoy, marker):
        assert audit["cors"] == ("preflight" if method == "OPTIONS" else "allowed"), audit
        assert audit["decision"] in ("allowed", "redacted"), audit


@pytest.mark.parametrize("mode", MODES)
def test_the_refused_origin_gets_a_network_error_and_nothing_reaches_the_model(browser, browser_envoy, pages, standin, mode):
    _, refused = pages
    marker, got = run_fetch(browser, refused, browser_envoy, mode)
    assert got == {"error": "TypeError: Failed to fetch"}, got
    assert standin.received(marker) == []
    # A simple request is refused by the filter (403, no CORS headers); a preflighted one stops
    # at its preflight (403): the browser never sends the request itself.
    wait_for(lambda: records(browser_envoy, marker), 5, "audit record")
    [(method, audit)] = records(browser_envoy, marker)
    assert method == ("OPTIONS" if mode == "preflight" else "POST")
    assert (audit["decision"], audit["reason"]) == ("denied", "cors_origin"), audit
    assert audit["cors"] == ("preflight" if mode == "preflight" else "refused")
