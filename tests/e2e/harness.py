"""Processes for end-to-end tests: the upstream stand-in and a real Envoy with inferguard.

Every process gets free ports, is waited on until ready, and is stopped (its whole process
group) when the test session ends, whether the tests passed or not.
"""
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
ENVOY = os.environ.get("ENVOY_BIN", os.path.join(VENV_BIN, "envoy"))
WASM = os.path.join(ROOT, "target", "inferguard.wasm")
CERTS = os.path.join(ROOT, "certs")
CA = os.path.join(CERTS, "ca.crt")


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
    def __init__(self, workdir):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        super().__init__([sys.executable, "tests/upstream/standin.py", "--listen", self.address],
                         os.path.join(workdir, f"standin-{self.port}.log"))
        wait_for(lambda: urllib.request.urlopen(f"http://{self.address}/health", timeout=1).status == 200,
                 10, "stand-in", self.proc, self.log)

    def received(self, marker: str):
        """What reached the upstream: the stand-in's records of requests whose path or body contains
        `marker`, fetched from it directly (not through Envoy), with each body as bytes."""
        q = urllib.parse.urlencode({"marker": marker})
        with urllib.request.urlopen(f"http://{self.address}/_received?{q}", timeout=5) as r:
            records = json.loads(r.read())
        for rec in records:
            rec["body"] = base64.b64decode(rec["body"])
        return records


class Envoy(Process):
    """Envoy rendered from envoy/envoy.yaml, with the given plugin configuration."""

    def __init__(self, workdir, upstream: str, plugin_config: str = "{}", bare: bool = False, wait=True):
        self.https_port, self.plain_port, self.admin_port = free_port(), free_port(), free_port()
        tag = f"{self.https_port}"
        self.config_path = os.path.join(workdir, f"plugin-{tag}.json")
        with open(self.config_path, "w") as f:
            f.write(plugin_config)
        self.yaml = os.path.join(workdir, f"envoy-{tag}.yaml")
        render = [sys.executable, "envoy/render.py", "--https-port", str(self.https_port),
                  "--plain-port", str(self.plain_port), "--admin-port", str(self.admin_port),
                  "--listen-address", "127.0.0.1", "--upstream", upstream, "--certs", CERTS,
                  "--wasm", WASM, "--config", self.config_path, "-o", self.yaml]
        if bare:
            render.append("--bare")
        subprocess.run(render, check=True, cwd=ROOT)
        super().__init__([ENVOY, "-c", self.yaml, "--disable-hot-restart", "--concurrency", "2",
                          "--log-level", "warn", "--component-log-level", "wasm:info",
                          "--file-flush-interval-msec", "50"],
                         os.path.join(workdir, f"envoy-{tag}.log"))
        self.base = f"https://localhost:{self.https_port}"
        if wait:
            wait_for(self.ready, 30, "envoy", self.proc, self.log)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
            if r.read().strip() != b"LIVE":
                return False
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=1):
            return True

    def audit_records(self):
        """Every audit record in the access log so far, in order, with its request line."""
        out = []
        for line in self.output().splitlines():
            if " inferguard=" in line:
                head, _, audit = line.partition(" inferguard=")
                out.append((head, None if audit == "-" else json.loads(audit)))
        return out

    def audit_for(self, marker: str, timeout: float = 5.0):
        """The audit record of the (single) access-log line containing `marker`."""
        found = []

        def seen():
            found[:] = [a for h, a in self.audit_records() if marker in h]
            return bool(found)

        wait_for(seen, timeout, f"access log line for {marker}")
        assert len(found) == 1, found
        return found[0]

    def stats(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats", timeout=2) as r:
            return r.read().decode()


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
