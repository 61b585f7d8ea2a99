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

--istio-wasmplugin NAMESPACE/NAME renders the wasm filter exactly as istiod (1.30) generates it for
a WasmPlugin of that name, once istio-agent has fetched the module: an HTTP filter that takes its
configuration over ECDS (config_discovery, here from a file beside the rendered bootstrap, where
istiod uses ADS), and in that ECDS resource an envoy.extensions.filters.http.wasm.v3.Wasm with the
plugin configuration as JSON in a google.protobuf.StringValue, the V8 runtime, no vm_id,
failure_policy FAIL_CLOSED (failStrategy FAIL_CLOSE) and no allow_on_headers_stop_iteration, which a
WasmPlugin cannot set (istio/README.md has the sources). Without it the filter is configured inline
with allow_on_headers_stop_iteration: true, as before.

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


# What istiod names a WasmPlugin's filter and plugin: since 1.30 a WasmPlugin becomes a synthetic
# TrafficExtension named <name>~istio-translated-wasmplugin (pilot/pkg/config/kube/extensions/
# translate.go), whose ECDS resource and HTTP filter are called
# extensions.istio.io/trafficextension/<namespace>.<that name> and whose PluginConfig.name is
# <namespace>.<that name> (pilot/pkg/model/extensions.go).
ISTIO_TRANSLATED = "~istio-translated-wasmplugin"
ISTIO_RESOURCE_PREFIX = "extensions.istio.io/trafficextension/"
# istio/wasmplugin.yaml's pluginName, which istiod sets as the root id.
ISTIO_PLUGIN_NAME = "inferguard"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"


def istio_names(wasmplugin: str):
    """(ECDS resource and filter name, PluginConfig.name) for a WasmPlugin NAMESPACE/NAME."""
    namespace, _, name = wasmplugin.partition("/")
    if not namespace or not name:
        raise SystemExit(f"--istio-wasmplugin {wasmplugin!r}: expected NAMESPACE/NAME")
    plugin = f"{namespace}.{name}{ISTIO_TRANSLATED}"
    return ISTIO_RESOURCE_PREFIX + plugin, plugin


def istio_extension_config(wasmplugin: str, plugin_config: str, wasm: str) -> dict:
    """The ECDS DiscoveryResponse that istiod sends for the WasmPlugin, as istio-agent hands it to
    Envoy (remote oci:// code rewritten to the fetched local file; the ISTIO_META_* environment
    variables it reads removed, leaving none)."""
    resource, plugin = istio_names(wasmplugin)
    config = {
        "name": plugin,
        "root_id": ISTIO_PLUGIN_NAME,
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm}}},
        "failure_policy": "FAIL_CLOSED",
    }
    parsed = json.loads(plugin_config) if plugin_config.strip() else {}
    if parsed:
        # pluginConfig is a google.protobuf.Struct; istiod marshals it to JSON (protomarshal.ToJSON)
        # and wraps it in a StringValue. An empty pluginConfig gives no configuration at all.
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                   "value": json.dumps(parsed, sort_keys=True, separators=(",", ":"))}
    return {"version_info": "1", "resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": resource,
        "typed_config": {"@type": WASM_TYPE, "config": config},
    }]}


def istio_filter(wasmplugin: str, ecds_path: str) -> str:
    """The HTTP filter istiod puts in the chain for a WasmPlugin: config_discovery only."""
    resource, _ = istio_names(wasmplugin)
    return f"""
          # BEGIN inferguard
          # As istiod generates it for WasmPlugin {wasmplugin} (render.py --istio-wasmplugin): the
          # configuration comes over ECDS, from {os.path.basename(ecds_path)} (istiod: ADS); requests wait
          # for it (initial_fetch_timeout 0s). RBAC is the type istio-agent substitutes (deny all)
          # when it cannot fetch a FAIL_CLOSE plugin's module.
          - name: {json.dumps(resource)}
            config_discovery:
              config_source:
                path_config_source: {{ path: {json.dumps(ecds_path)} }}
                resource_api_version: V3
                initial_fetch_timeout: 0s
              type_urls: [{json.dumps(WASM_TYPE)}, {json.dumps(RBAC_TYPE)}]
          # END inferguard
"""


def host_port(address: str):
    host, _, port = address.rpartition(":")
    return socket.gethostbyname(host or "127.0.0.1"), int(port)


def istio_ecds_path(args) -> str:
    """Where --istio-wasmplugin writes the ECDS resource: beside the rendered bootstrap (or .run/)."""
    if args.istio_ecds:
        return os.path.abspath(args.istio_ecds)
    base = os.path.abspath(args.output) if args.output != "-" else os.path.join(ROOT, ".run", "envoy.yaml")
    return os.path.splitext(base)[0] + ".ecds.json"


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
    if args.istio_wasmplugin:
        ecds_path = istio_ecds_path(args)
        os.makedirs(os.path.dirname(ecds_path), exist_ok=True)
        with open(ecds_path, "w") as f:
            json.dump(istio_extension_config(args.istio_wasmplugin, plugin_config, os.path.abspath(args.wasm)), f,
                      indent=1)
        # Literal text: the ${...} of the template are filled below, and the filter has none.
        filter_yaml = istio_filter(args.istio_wasmplugin, ecds_path).replace("$", "$$")
        template, n = re.subn(r"\n *# BEGIN inferguard\n.*?# END inferguard\n", lambda _: filter_yaml, template,
                              flags=re.S)
        assert n == 1, "envoy.yaml: no single BEGIN/END inferguard block"
        # Envoy's file subscriptions need a node id and cluster, which every Istio proxy has (shaped
        # like a sidecar's: <type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local).
        # jwt_authn as a RequestAuthentication configures it (pilot/pkg/security/authn/
        # policy_applier.go): space-delimited claims split into lists in the metadata, no failure
        # status there, and a token that fails verification refused by jwt_authn itself.
        template, n1 = re.subn(r"\n( *)failed_status_in_metadata: failure\n",
                               r"\n\1normalize_payload_in_metadata: { space_delimited_claims: [scope, permission] }\n",
                               template)
        template, n2 = re.subn(r"allow_missing_or_failed: \{\}",
                               "requires_any: { requirements: [{ provider_name: inferguard }, { allow_missing: {} }] }",
                               template)
        assert n1 >= 1 and n2 >= 1, "envoy.yaml: jwt_authn is not where render.py expects it"
        namespace = args.istio_wasmplugin.partition("/")[0]
        template = (f"node:\n  id: sidecar~127.0.0.1~inferguard.{namespace}~{namespace}.svc.cluster.local\n"
                    f"  cluster: inferguard.{namespace}\n") + template
    if args.failure_policy != "FAIL_CLOSED":
        template, n = re.subn(r"\n( *)failure_policy: FAIL_CLOSED\n",
                              rf"\n\1failure_policy: {args.failure_policy}\n"
                              r"\1reload_config: { backoff: { base_interval: 0.1s, max_interval: 1s } }\n", template)
        assert n == 1 or args.istio_wasmplugin, "envoy.yaml: failure_policy is not where render.py expects it"
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
    p.add_argument("--failure-policy", default="FAIL_CLOSED", choices=["FAIL_CLOSED", "FAIL_RELOAD", "FAIL_OPEN"],
                   help="what Envoy does when the filter crashes (FAIL_RELOAD: a new VM, 0.1 s backoff)")
    p.add_argument("--istio-wasmplugin", metavar="NAMESPACE/NAME",
                   help="configure the filter as istiod does for that WasmPlugin (ECDS, no allow_on_headers_stop_iteration)")
    p.add_argument("--istio-ecds", help="file of the ECDS resource with --istio-wasmplugin (default: beside -o, .ecds.json)")
    p.add_argument("-o", "--output", default="-")
    args = p.parse_args()
    if args.bare and args.istio_wasmplugin:
        p.error("--bare leaves the filter out: no --istio-wasmplugin with it")
    out = render(args)
    if args.output == "-":
        sys.stdout.write(out)
    else:
        with open(args.output, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
