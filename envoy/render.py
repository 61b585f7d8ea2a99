#!/usr/bin/env python3
"""Render envoy/envoy.yaml into a runnable Envoy bootstrap.

Fills the ${...} placeholders; with --bare, drops the inferguard filter (same config otherwise,
jwt_authn included, for side-by-side benchmarks). The listener and cluster buffer limits are sized
from the plugin configuration's own max_body_bytes, so Envoy never resets a body the filter is
willing to scan.

Two upstreams: --upstream is the model server behind the default route, over TLS verified against
--upstream-ca for the name --upstream-sni (--upstream-plaintext: plain HTTP, as the benchmark's
fast upstream speaks); --plain-upstream is the plaintext server behind the `legacy-plaintext`
route (virtual host `legacy.inferguard.test`), the --upstream address unless given.

--capture-log is the file Envoy's second access log writes: the capture of requests whose policy
has `audit.capture.to: capture_log` (one line per request that has one). Default:
capture-<https port>.log beside the rendered file (-o), or under .run/ when it goes to stdout.

--plain-filtered-port (tests) adds a plaintext listener that runs the TLS listener's whole HTTP
chain (jwt_authn, inferguard, router), so the filter's own 426 `tls_required` can be seen; without
it that listener is not rendered.
"""
import argparse
import json
import os
import re
import socket
import string
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # the filter's default, src/config/mod.rs


def buffer_limit(plugin_config: str) -> int:
    """Twice the largest max_body_bytes of any policy, so a body just over the filter's limit reaches the filter
    (which answers 413/502 in the API's error shape) instead of tripping Envoy's own limit."""
    try:
        cfg = json.loads(plugin_config) if plugin_config.strip() else {}
    except ValueError:
        cfg = {}  # the filter itself rejects it, with the field path, when Envoy loads it
    sizes = [DEFAULT_MAX_BODY]
    # The default policy (the top level) and every named policy.
    levels = [cfg] if isinstance(cfg, dict) else []
    levels += [p for p in (levels[0].get("policies") or [] if levels else []) if isinstance(p, dict)]
    for level in levels:
        for side in ("request", "response"):
            section = level.get(side)
            v = section.get("max_body_bytes") if isinstance(section, dict) else None
            if isinstance(v, int) and v > 0:
                sizes.append(v)
    return 2 * max(sizes) + 64 * 1024


def drop_block(template: str, name: str) -> str:
    """The template without the lines from `# BEGIN name` to `# END name`."""
    out, n = re.subn(rf"\n *# BEGIN {name}\n.*?# END {name}\n", "\n", template, flags=re.S)
    assert n == 1, f"envoy.yaml: no single BEGIN/END {name} block"
    return out


def host_port(address: str):
    host, _, port = address.rpartition(":")
    return socket.gethostbyname(host or "127.0.0.1"), int(port)


def render(args) -> str:
    with open(os.path.join(HERE, "envoy.yaml")) as f:
        template = f.read()
    if args.bare:
        template = drop_block(template, "inferguard")
        # No filter, no record: the JSON line says null instead of Envoy's "-".
        template = template.replace("%FILTER_STATE(wasm.inferguard.audit:PLAIN)%", "null")
    if args.upstream_plaintext:
        template = drop_block(template, "upstream-tls")
    if not args.plain_filtered_port:
        template = drop_block(template, "plain-filtered")
    with open(args.config) as f:
        plugin_config = f.read()
    host, port = host_port(args.upstream)
    plain_host, plain_port = host_port(args.plain_upstream or args.upstream)
    cert_dir = os.path.abspath(args.certs)
    # Test-only: the whole of jwt_authn's dynamic metadata (every claim) in the access log.
    # (Envoy prints dynamic metadata as JSON: it nests as is in the JSON line.)
    extra_log = ',\\"jwt_authn\\":%DYNAMIC_METADATA(envoy.filters.http.jwt_authn)%' if args.log_jwt_metadata else ""
    capture_log = os.path.abspath(args.capture_log or os.path.join(
        os.path.dirname(os.path.abspath(args.output)) if args.output != "-" else os.path.join(ROOT, ".run"),
        f"capture-{args.https_port}.log"))
    # Envoy opens the file at start, and does not make its directory.
    os.makedirs(os.path.dirname(capture_log), exist_ok=True)
    return string.Template(template).substitute(
        LISTEN_ADDRESS=args.listen_address,
        HTTPS_PORT=args.https_port,
        PLAIN_PORT=args.plain_port,
        PLAIN_FILTERED_PORT=args.plain_filtered_port or 0,
        ADMIN_PORT=args.admin_port,
        UPSTREAM_HOST=host,
        UPSTREAM_PORT=port,
        UPSTREAM_TLS="false" if args.upstream_plaintext else "true",
        UPSTREAM_SNI=json.dumps(args.upstream_sni),
        UPSTREAM_CA=os.path.abspath(args.upstream_ca) if args.upstream_ca else os.path.join(cert_dir, "ca.crt"),
        PLAIN_UPSTREAM_HOST=plain_host,
        PLAIN_UPSTREAM_PORT=plain_port,
        EXTRA_LOG_FIELDS=extra_log,
        # A JSON string is a valid YAML double-quoted scalar (the template quotes it).
        CAPTURE_LOG=json.dumps(capture_log)[1:-1],
        CERT_DIR=cert_dir,
        WASM=os.path.abspath(args.wasm),
        # A JSON string is a valid YAML double-quoted scalar.
        PLUGIN_CONFIG=json.dumps(plugin_config),
        BUFFER_LIMIT=buffer_limit(plugin_config),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--https-port", type=int, default=8443)
    p.add_argument("--plain-port", type=int, default=8080)
    p.add_argument("--admin-port", type=int, default=9901)
    p.add_argument("--plain-filtered-port", type=int,
                   help="tests: a plaintext listener with the TLS listener's filter chain (the filter answers 426)")
    p.add_argument("--listen-address", default="0.0.0.0")
    p.add_argument("--upstream", default="127.0.0.1:8000", help="host:port of the inference server (TLS)")
    p.add_argument("--upstream-plaintext", action="store_true",
                   help="plain HTTP to --upstream (its cluster metadata then says upstream_tls: false)")
    p.add_argument("--upstream-sni", default="upstream.inferguard.test",
                   help="server name sent to --upstream and required in its certificate's DNS SANs")
    p.add_argument("--upstream-ca", help="CA that --upstream's certificate chains to (default: CERTS/ca.crt)")
    p.add_argument("--plain-upstream", help="host:port of the plaintext server behind Host legacy.inferguard.test (default: --upstream)")
    p.add_argument("--log-jwt-metadata", action="store_true",
                   help="tests: log jwt_authn's whole dynamic metadata (all claims) before inferguard=")
    p.add_argument("--capture-log", help="file of the capture log (default: capture-HTTPS_PORT.log beside -o, or .run/)")
    p.add_argument("--certs", default="certs")
    p.add_argument("--wasm", default="target/inferguard.wasm")
    p.add_argument("--config", default=os.path.join(HERE, "inferguard.json"), help="plugin configuration (JSON)")
    p.add_argument("--bare", action="store_true", help="leave the inferguard filter out")
    p.add_argument("-o", "--output", default="-")
    args = p.parse_args()
    out = render(args)
    if args.output == "-":
        sys.stdout.write(out)
    else:
        with open(args.output, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
