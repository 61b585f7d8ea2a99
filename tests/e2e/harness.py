"""Processes for end-to-end tests: the upstream stand-in and a real Envoy with inferguard.

Every process gets free ports, is waited on until ready, and is stopped (its whole process
group) when the test session ends, whether the tests passed or not. Also: JWTs for Envoy's
jwt_authn (`mint_token`) and HTTPS clients with or without a client certificate (`client`).
"""
import base64
import functools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import httpx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
ENVOY = os.environ.get("ENVOY_BIN", os.path.join(VENV_BIN, "envoy"))
WASM = os.path.join(ROOT, "target", "inferguard.wasm")
# The module with the `crash-test` feature (Makefile: $(CRASH_WASM)).
CRASH_WASM = os.path.join(ROOT, "target", "inferguard-crash-test.wasm")
CERTS = os.path.join(ROOT, "certs")
CA = os.path.join(CERTS, "ca.crt")
# What envoy/envoy.yaml's jwt_authn provider accepts (tokens signed by certs/jwt.key, in jwks.json).
JWT_ISSUER = "https://issuer.inferguard.test"
JWT_AUDIENCE = "inferguard"
JWT_KID = "inferguard-test"
# Client certificates (certs/client-NAME.crt) and the SPIFFE id each carries.
CLIENT_IDS = {"chat": "spiffe://cluster.local/ns/apps/sa/chat-ui", "batch": "spiffe://cluster.local/ns/batch/sa/etl"}
# The Host that envoy/envoy.yaml's `legacy` virtual host serves: its `legacy-plaintext` route goes to
# the plaintext upstream with the path unchanged (send `Host: LEGACY_HOST`; SNI can stay localhost).
LEGACY_HOST = "legacy.inferguard.test"


def scan_part(direction: dict) -> dict:
    """One direction of an audit record (`request` or `response`) without `bytes`, `status` and
    `output_tokens`: what was scanned, found and done, for tests about that alone.
    `detector_actions` is checked against `findings` and `actions` (its counts add up to both) and
    left out: tests of one detector with one action say it all with those two."""
    pairs = direction.get("detector_actions", {})
    per_detector = {d: sum(a.values()) for d, a in pairs.items()}
    per_action = {}
    for a in pairs.values():
        for action, n in a.items():
            per_action[action] = per_action.get(action, 0) + n
    assert (per_detector, per_action) == (direction.get("findings", {}), direction.get("actions", {})), direction
    return {k: v for k, v in direction.items() if k not in ("bytes", "status", "output_tokens", "detector_actions")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{read(log)}")
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not ready after {timeout}s\n{read(log)}")


def complete_lines(text: str) -> list:
    """The lines of a log another process is still appending to, without a last line it has not
    finished writing (no newline yet)."""
    return text[:text.rfind("\n") + 1].splitlines()


def read(path) -> str:
    if not path:
        return ""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def b64(text: str) -> str:
    """Prompt text that makes the stand-in say `text` without the prompt carrying it."""
    return "echo-b64:" + base64.b64encode(text.encode()).decode()


def mint_token(sub: str, scopes=None, groups=None, exp_in: int = 300, iss: str = JWT_ISSUER, key: str = "jwt",
               aud=JWT_AUDIENCE, kid: str = JWT_KID, **claims) -> str:
    """An RS256 JWT for Envoy's jwt_authn. `key` is "jwt" (certs/jwt.key, the key in jwks.json) or
    "jwt-other" (certs/jwt-other.key, which jwt_authn does not know); `exp_in` seconds from now
    (negative: already expired); `scopes` (a list) become the space-separated `scope` claim;
    `aud=None` leaves the audience out. Extra claims go in as given."""
    import jwt  # PyJWT, from tests/requirements.txt

    now = int(time.time())
    payload = {"iss": iss, "sub": sub, "iat": now, "exp": now + exp_in}
    if aud is not None:
        payload["aud"] = aud
    if scopes is not None:
        payload["scope"] = " ".join(scopes)
    if groups is not None:
        payload["groups"] = list(groups)
    payload.update(claims)
    return jwt.encode(payload, signing_key(key), algorithm="RS256", headers={"kid": kid})


@functools.lru_cache(maxsize=None)
def signing_key(key: str):
    """certs/KEY.key, loaded once: parsing an RSA key takes longer than signing with it."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(os.path.join(CERTS, f"{key}.key"), "rb") as f:
        return load_pem_private_key(f.read(), password=None)


def client_cert(name: str):
    """(certificate, key) paths of certs/client-NAME.* ("chat" or "batch"), or a path pair as is."""
    if isinstance(name, (tuple, list)):
        return tuple(name)
    return os.path.join(CERTS, f"client-{name}.crt"), os.path.join(CERTS, f"client-{name}.key")


def tls_context(cert=None, ca: str = CA) -> ssl.SSLContext:
    """A client TLS context trusting `ca`, presenting `cert` (see client_cert) if given."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(*client_cert(cert))
    return ctx


def client(cert=None, token: str = None, http2: bool = False, timeout: float = 30, **kw) -> httpx.Client:
    """An httpx client that trusts certs/ca.crt, presents client certificate `cert` ("chat",
    "batch" or a (crt, key) pair) if given, and sends `Authorization: Bearer token` if given."""
    headers = dict(kw.pop("headers", {}) or {})
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.Client(verify=tls_context(cert), http2=http2, timeout=timeout, headers=headers, **kw)


def raw_spec(body_or_chunks, content_type=None, headers=(), status=200, delay_ms=0, split=0,
             content_length=False) -> dict:
    """Request headers that make the stand-in answer exactly so, whatever the path (its raw mode).

    `body_or_chunks` is the body (bytes or str: one chunk, or `split`-byte chunks) or a list of
    chunks, each written and flushed on its own, `delay_ms` apart. Without a content-length header
    (given in `headers`, or `content_length=True` for the body's real length) the body goes out
    chunked. `content_type=None` sends no content-type at all."""
    if isinstance(body_or_chunks, (bytes, str)):
        body = body_or_chunks.encode() if isinstance(body_or_chunks, str) else body_or_chunks
        chunks = [body[i:i + split] for i in range(0, len(body), split)] if split else [body]
    else:
        chunks = [c.encode() if isinstance(c, str) else c for c in body_or_chunks]
    head = [] if content_type is None else [["content-type", content_type]]
    head += [[k, v] for k, v in headers]
    if content_length:
        head.append(["content-length", str(sum(len(c) for c in chunks))])
    spec = {"status": status, "headers": head, "chunks": [base64.b64encode(c).decode() for c in chunks],
            "delay_ms": delay_ms}
    return {"x-standin-raw": base64.urlsafe_b64encode(json.dumps(spec).encode()).decode().rstrip("=")}


class Process:
    """A child process in its own process group, with its output in a file."""

    def __init__(self, argv, log_path, env=None):
        self.log = log_path
        self._out = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=env, start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self._out.close()

    def output(self) -> str:
        self._out.flush()
        return read(self.log)


class Standin(Process):
    """tests/upstream/standin.py on a free port: plain HTTP, or HTTPS with `cert`, a name under
    certs/ ("upstream": certs/upstream.crt and .key) or a (crt, key) pair; `ca` is what the harness
    trusts to reach its /health and /_received (certs/ca.crt unless the certificate is foreign)."""

    def __init__(self, workdir, cert=None, ca: str = CA):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        argv = [sys.executable, "tests/upstream/standin.py", "--listen", self.address]
        self.tls = cert is not None
        if self.tls:
            crt, key = cert if isinstance(cert, (tuple, list)) else (os.path.join(CERTS, f"{cert}.crt"),
                                                                     os.path.join(CERTS, f"{cert}.key"))
            argv += ["--tls-cert", crt, "--tls-key", key]
        self.base = f"{'https' if self.tls else 'http'}://{self.address}"
        self._ctx = ssl.create_default_context(cafile=ca) if self.tls else None
        super().__init__(argv, os.path.join(workdir, f"standin-{self.port}.log"))
        wait_for(lambda: self._get("/health").status == 200, 10, "stand-in", self.proc, self.log)

    def _get(self, path):
        return urllib.request.urlopen(f"{self.base}{path}", timeout=5, context=self._ctx)

    def client(self, **kw) -> httpx.Client:
        """An httpx client for talking to the stand-in directly (trusting its CA in TLS mode)."""
        return httpx.Client(verify=self._ctx if self.tls else True, **kw)

    def received(self, marker: str):
        """What reached the upstream: the stand-in's records of requests whose path or body contains
        `marker`, fetched from it directly (not through Envoy), with each body as bytes. Each record
        also says how it came: "tls" (bool), "tls_version", "sni"."""
        q = urllib.parse.urlencode({"marker": marker})
        with self._get(f"/_received?{q}") as r:
            records = json.loads(r.read())
        for rec in records:
            rec["body"] = base64.b64decode(rec["body"])
        return records


def held_headers(plugin_config: str) -> str:
    """`plugin_config` with `hold_headers: true` unless it says: the harness's Envoy holds headers
    (render.py sets allow_on_headers_stop_iteration from it), as envoy/envoy.yaml does with `make
    run`. Inserted as text, so a document a test wrote wrong on purpose stays as wrong."""
    text = plugin_config.strip() or "{}"
    try:
        json.loads(text)
    except ValueError:
        return plugin_config  # a test of an unreadable document: its errors' columns must not move
    if not text.startswith("{") or '"hold_headers"' in text:
        return plugin_config
    rest = text[1:].lstrip()
    return '{"hold_headers": true' + ("" if rest.startswith("}") else ", ") + rest


class Envoy(Process):
    """Envoy rendered from envoy/envoy.yaml, with the given plugin configuration.

    `upstream` (host:port) is the default route's cluster, over TLS verified as `upstream_sni`
    against `upstream_ca` (certs/ca.crt) unless `upstream_plaintext`; `plain_upstream` is what the
    `legacy-plaintext` route (requests with `Host: LEGACY_HOST`) reaches in plain HTTP (default:
    `upstream`). `plain_filtered_base` is a plaintext listener running the TLS listener's whole
    chain (jwt_authn, inferguard, router): there the filter itself answers 426. `plain_port` is the
    listener that answers every request with Envoy's own direct-response 426.
    `log_jwt_metadata` puts jwt_authn's whole dynamic metadata in each access-log line (`jwt_authn=`,
    read with `jwt_metadata`). The plugin configuration gets `hold_headers: true` unless it sets it
    (`held_headers`). `istio_wasmplugin` ("NAMESPACE/NAME") configures the filter as istiod does for
    that WasmPlugin (render.py --istio-wasmplugin: over ECDS, no allow_on_headers_stop_iteration,
    jwt_authn as a RequestAuthentication sets it up), with the plugin configuration as given; the
    ECDS resource is written to `ecds_path`. `wasm` is the module (the crash-test build:
    `CRASH_WASM`), `failure_policy` what Envoy does when it crashes (FAIL_CLOSED unless given); `concurrency` the
    worker threads (each runs its own VM)."""

    def __init__(self, workdir, upstream: str, plugin_config: str = "{}", bare: bool = False, wait=True,
                 plain_upstream: str = None, upstream_plaintext: bool = False, upstream_sni: str = None,
                 upstream_ca: str = None, log_jwt_metadata: bool = False, istio_wasmplugin: str = None,
                 wasm: str = WASM, failure_policy: str = None, concurrency: int = 2):
        self.https_port, self.plain_port, self.admin_port = free_port(), free_port(), free_port()
        self.plain_filtered_port = free_port()
        tag = f"{self.https_port}"
        self.config_path = os.path.join(workdir, f"plugin-{tag}.json")
        with open(self.config_path, "w") as f:
            f.write(plugin_config if istio_wasmplugin else held_headers(plugin_config))
        self.yaml = os.path.join(workdir, f"envoy-{tag}.yaml")
        self.capture_log = os.path.join(workdir, f"capture-{tag}.log")
        render = [sys.executable, "envoy/render.py", "--https-port", str(self.https_port),
                  "--capture-log", self.capture_log,
                  "--plain-port", str(self.plain_port), "--admin-port", str(self.admin_port),
                  "--plain-filtered-port", str(self.plain_filtered_port),
                  "--listen-address", "127.0.0.1", "--upstream", upstream, "--certs", CERTS,
                  "--wasm", wasm, "--config", self.config_path, "-o", self.yaml]
        if failure_policy:
            render += ["--failure-policy", failure_policy]
        if bare:
            render.append("--bare")
        if plain_upstream:
            render += ["--plain-upstream", plain_upstream]
        if upstream_plaintext:
            render.append("--upstream-plaintext")
        if upstream_sni:
            render += ["--upstream-sni", upstream_sni]
        if upstream_ca:
            render += ["--upstream-ca", upstream_ca]
        if log_jwt_metadata:
            render.append("--log-jwt-metadata")
        self.ecds_path = os.path.join(workdir, f"envoy-{tag}.ecds.json") if istio_wasmplugin else None
        if istio_wasmplugin:
            render += ["--istio-wasmplugin", istio_wasmplugin, "--istio-ecds", self.ecds_path]
        subprocess.run(render, check=True, cwd=ROOT)
        super().__init__([ENVOY, "-c", self.yaml, "--disable-hot-restart", "--concurrency", str(concurrency),
                          "--log-level", "warn", "--component-log-level", "wasm:info",
                          "--file-flush-interval-msec", "50"],
                         os.path.join(workdir, f"envoy-{tag}.log"))
        self.base = f"https://localhost:{self.https_port}"
        self.plain_filtered_base = f"http://127.0.0.1:{self.plain_filtered_port}"
        if wait:
            wait_for(self.ready, 30, "envoy", self.proc, self.log)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
            if r.read().strip() != b"LIVE":
                return False
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=1):
            return True

    def log_entries(self):
        """Every access-log line so far, in order, each parsed: one JSON object per line (see
        envoy/envoy.yaml), the audit record nested as its `inferguard` member (None when the
        filter wrote none: Envoy prints `-`). Envoy's other output lines are skipped, and so is a
        last line Envoy is still writing (no newline yet): it is read whole on the next call."""
        out = []
        for line in complete_lines(self.output()):
            if not line.startswith('{"start_time":'):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                if not line.endswith(',"inferguard":-}'):
                    raise AssertionError(f"an access-log line that is not JSON: {line!r}")
                entry = json.loads(line[:-len('-}')] + "null}")
            out.append(entry)
        return out

    def audit_records(self):
        """Every audit record in the access log so far, in order, with its line: (head, record),
        where head is the JSON line without its `inferguard` member (so that a marker in the path
        or query finds it)."""
        out = []
        for entry in self.log_entries():
            audit = entry.pop("inferguard", None)
            out.append((json.dumps(entry), audit))
        return out

    def _single(self, marker: str, timeout: float):
        found = []

        def seen():
            found[:] = [e for e in self.log_entries() if marker in json.dumps({k: v for k, v in e.items()
                                                                               if k != "inferguard"})]
            return bool(found)

        wait_for(seen, timeout, f"access log line for {marker}")
        assert len(found) == 1, found
        return found[0]

    def audit_for(self, marker: str, timeout: float = 5.0):
        """The audit record of the (single) access-log line containing `marker`."""
        return self._single(marker, timeout)["inferguard"]

    def log_entry(self, marker: str, timeout: float = 5.0) -> dict:
        """The (single) access-log line containing `marker` (outside its record), parsed."""
        return self._single(marker, timeout)

    def log_line(self, marker: str, timeout: float = 5.0) -> str:
        """The (single) access-log line containing `marker`, as JSON text without its record."""
        entry = dict(self._single(marker, timeout))
        entry.pop("inferguard", None)
        return json.dumps(entry)

    def log_field(self, marker: str, name: str) -> str:
        """A top-level field of the access-log line containing `marker`, as text ("-" when empty;
        `jwt_authn`, Envoy's JSON metadata, as JSON text or "-")."""
        entry = self.log_entry(marker)
        if name not in entry:
            raise KeyError(f"no {name} in {entry!r}")
        v = entry[name]
        if name == "jwt_authn":
            return "-" if v in (None, "-", {}) else json.dumps(v)
        return "-" if v in (None, "") else str(v)

    def jwt_metadata(self, marker: str):
        """jwt_authn's dynamic metadata for the request whose log line contains `marker`, as the
        filter would read it under metadata.filter_metadata["envoy.filters.http.jwt_authn"] (None
        when empty). Needs `log_jwt_metadata=True`."""
        raw = self.log_field(marker, "jwt_authn")
        return None if raw == "-" else json.loads(raw)

    def capture_output(self) -> str:
        """All the capture log holds so far (`audit.capture.to: capture_log`)."""
        return read(self.capture_log)

    def capture_entries(self):
        """Every line of the capture log so far, each parsed (one JSON object per line)."""
        return [json.loads(line) for line in complete_lines(self.capture_output())]

    def capture_for(self, request_id: str, timeout: float = 5.0) -> dict:
        """The (single) capture log line of the request `request_id`."""
        found = []

        def seen():
            found[:] = [e for e in self.capture_entries() if e.get("request_id") == request_id]
            return bool(found)

        wait_for(seen, timeout, f"capture log line for {request_id}")
        assert len(found) == 1, found
        return found[0]

    def stats(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats", timeout=2) as r:
            return r.read().decode()


def stat(envoy: Envoy, name: str) -> int:
    """One counter or gauge from Envoy's admin /stats (0 when absent)."""
    for line in envoy.stats().splitlines():
        k, _, v = line.partition(": ")
        if k == name:
            return int(v)
    return 0


def envoy_validate(workdir, upstream, plugin_config: str):
    """Runs `envoy --mode validate` on a rendered config; returns (exit code, output)."""
    cfg = os.path.join(workdir, "validate.json")
    with open(cfg, "w") as f:
        f.write(plugin_config)
    yaml = os.path.join(workdir, "validate.yaml")
    subprocess.run([sys.executable, "envoy/render.py", "--upstream", upstream, "--certs", CERTS, "--wasm", WASM,
                    "--config", cfg, "-o", yaml], check=True, cwd=ROOT)
    r = subprocess.run([ENVOY, "--mode", "validate", "-c", yaml, "--disable-hot-restart", "--log-level", "error",
                        "--component-log-level", "wasm:info"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    return r.returncode, r.stdout + r.stderr


def tempdir():
    return tempfile.mkdtemp(prefix="inferguard-e2e-")
