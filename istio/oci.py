#!/usr/bin/env python3
"""The filter as an OCI image that Istio's Wasm image fetcher accepts, and a push to a registry.

    oci.py build [--wasm target/inferguard.wasm] [--out target/oci] [--repo REGISTRY/inferguard]
    oci.py push [--layout target/oci] [--plain-http] REGISTRY/REPO[:TAG]

The format is the "compat" variant (solo-io/wasm spec-compat.md): an ordinary OCI image whose one
layer (application/vnd.oci.image.layer.v1.tar+gzip) is a tar holding only `plugin.wasm`. Istio's
fetcher (pkg/wasm/imagefetcher.go) reads the last layer of such an image and takes `plugin.wasm`
from it; its other accepted format, the "oci" variant, wants exactly two layers, one of them
application/vnd.module.wasm.content.layer.v1+wasm, and it reads nothing else (not the single-layer
CNCF Wasm artifact). A plain image is also what every registry and tool (skopeo, crane, docker)
takes without special media types.

`build` writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) that is reproducible:
fixed tar metadata (mtime 0, uid/gid 0, no user names, mode 0444) and gzip header (mtime 0, no
name), so the same module always gives the same manifest digest. It then reads back what it wrote
and checks every blob's digest and size against its descriptor and that the layer unpacks to the
module byte for byte, and prints the manifest digest and the `oci://...@sha256:...` line for
istio/settings/settings.yaml.

`push` uploads the layout with the OCI distribution API: each blob that the registry lacks (HEAD)
by a monolithic upload (POST, then PUT with the digest), then the manifest (PUT), by tag when one
is given and always checked against the digest the registry reports. Credentials: REGISTRY_USER
and REGISTRY_PASSWORD, else the registry's entry in ~/.docker/config.json (`auths`, not credential
helpers); Basic and Bearer (token service) challenges are answered. Plain HTTP is used for
localhost and 127.0.0.1, or with --plain-http.

Standard library only.
"""
import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# The file Istio's fetcher looks for in the layer (extractWasmPluginBinary).
MODULE_NAME = "plugin.wasm"
# The tag the layout's one image carries (`skopeo inspect oci:target/oci:inferguard`).
LAYOUT_REF = "inferguard"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    """JSON with sorted keys and no spaces: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(module: bytes) -> bytes:
    """A tar holding only plugin.wasm, with no metadata that depends on when or by whom it was made."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(MODULE_NAME)
        info.size, info.mtime, info.mode = len(module), 0, 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(module))
    return buf.getvalue()


def image(module: bytes):
    """(manifest bytes, {digest: blob bytes}) of the compat image of `module`."""
    tar = layer_tar(module)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    config = canonical({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": sha256(layer), "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": MODULE_NAME}}],
        # The compat variant's marker (read by runtimes such as crun; Istio needs no marker).
        "annotations": {"module.wasm.image/variant": "compat"},
    })
    return manifest, {sha256(config): config, sha256(layer): layer}


def blob_path(layout: str, digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return os.path.join(layout, "blobs", algorithm, hex_)


def write_layout(layout: str, module: bytes) -> str:
    """Writes the OCI image layout of `module` into `layout` (replacing its index); returns the
    manifest digest."""
    manifest, blobs = image(module)
    blobs[sha256(manifest)] = manifest
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    for digest, data in blobs.items():
        with open(blob_path(layout, digest), "wb") as f:
            f.write(data)
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE,
             "manifests": [{"mediaType": MANIFEST_TYPE, "digest": sha256(manifest), "size": len(manifest),
                            "annotations": {"org.opencontainers.image.ref.name": LAYOUT_REF}}]}
    with open(os.path.join(layout, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(layout, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    # Blobs of earlier builds are no longer referenced: remove them, so the layout holds one image.
    for name in os.listdir(os.path.join(layout, "blobs", "sha256")):
        if "sha256:" + name not in blobs:
            os.remove(os.path.join(layout, "blobs", "sha256", name))
    return sha256(manifest)


class LayoutError(Exception):
    pass


def read_blob(layout: str, descriptor: dict) -> bytes:
    """A blob of the layout, checked against its descriptor's digest and size."""
    with open(blob_path(layout, descriptor["digest"]), "rb") as f:
        data = f.read()
    if sha256(data) != descriptor["digest"] or len(data) != descriptor["size"]:
        raise LayoutError(f"blob {descriptor['digest']}: content has digest {sha256(data)} and size {len(data)}, "
                          f"the descriptor says size {descriptor['size']}")
    return data


def read_layout(layout: str):
    """(manifest descriptor, manifest bytes, config bytes, layer bytes) of the layout's one image,
    every blob checked against its descriptor."""
    with open(os.path.join(layout, "oci-layout"), "rb") as f:
        if json.load(f).get("imageLayoutVersion") != "1.0.0":
            raise LayoutError("oci-layout: not imageLayoutVersion 1.0.0")
    with open(os.path.join(layout, "index.json"), "rb") as f:
        index = json.load(f)
    if len(index.get("manifests", [])) != 1:
        raise LayoutError("index.json: expected exactly one manifest")
    desc = index["manifests"][0]
    manifest_bytes = read_blob(layout, desc)
    manifest = json.loads(manifest_bytes)
    if desc["mediaType"] != MANIFEST_TYPE or manifest.get("mediaType") != MANIFEST_TYPE:
        raise LayoutError("the image is not an OCI image manifest")
    if manifest["config"]["mediaType"] != CONFIG_TYPE:
        raise LayoutError(f"config media type {manifest['config']['mediaType']}")
    if len(manifest["layers"]) != 1 or manifest["layers"][0]["mediaType"] != LAYER_TYPE:
        raise LayoutError("expected one layer of media type " + LAYER_TYPE)
    config = read_blob(layout, manifest["config"])
    layer = read_blob(layout, manifest["layers"][0])
    return desc, manifest_bytes, config, layer


def module_of_layer(layer: bytes) -> bytes:
    """plugin.wasm from a compat layer, as Istio's fetcher finds it (by base name)."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer)), mode="r:") as tar:
        for member in tar.getmembers():
            if os.path.basename(member.name) == MODULE_NAME and member.isfile():
                return tar.extractfile(member).read()
    raise LayoutError(f"the layer holds no {MODULE_NAME}")


def verify_layout(layout: str, module: bytes) -> str:
    """Checks what build wrote: every digest and size, the config's diff_id, and that the layer
    unpacks to `module` byte for byte. Returns the manifest digest."""
    desc, _, config, layer = read_layout(layout)
    if json.loads(config)["rootfs"]["diff_ids"] != [sha256(gzip.decompress(layer))]:
        raise LayoutError("config rootfs.diff_ids does not match the layer")
    if module_of_layer(layer) != module:
        raise LayoutError(f"the layer's {MODULE_NAME} differs from the module")
    return desc["digest"]


# --- push ----------------------------------------------------------------------------------------

def parse_reference(ref: str):
    """(registry, repository, tag or None) of REGISTRY/REPO[:TAG]."""
    if "@" in ref:
        raise ValueError(f"{ref}: give a tag or none, not a digest (the digest is the layout's)")
    registry, _, rest = ref.partition("/")
    if not rest or not ("." in registry or ":" in registry or registry == "localhost"):
        raise ValueError(f"{ref}: expected REGISTRY/REPOSITORY[:TAG], with the registry's host name")
    repository, _, tag = rest.rpartition(":") if ":" in rest.rsplit("/", 1)[-1] else (rest, "", "")
    return registry, repository, tag or None


def docker_config_credentials(registry: str):
    path = os.path.join(os.environ.get("DOCKER_CONFIG", os.path.expanduser("~/.docker")), "config.json")
    try:
        with open(path) as f:
            auths = json.load(f).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"):
        auth = auths.get(key, {}).get("auth")
        if auth:
            user, _, password = base64.b64decode(auth).decode().partition(":")
            return user, password
    return None


def credentials(registry: str):
    if os.environ.get("REGISTRY_USER"):
        return os.environ["REGISTRY_USER"], os.environ.get("REGISTRY_PASSWORD", "")
    return docker_config_credentials(registry)


class Registry:
    """The OCI distribution API of one repository, with Basic or Bearer authentication on demand."""

    def __init__(self, registry: str, repository: str, plain_http: bool):
        scheme = "http" if plain_http or registry.split(":")[0] in ("localhost", "127.0.0.1", "[::1]") else "https"
        self.base = f"{scheme}://{registry}"
        self.registry, self.repository = registry, repository
        self.creds = credentials(registry)
        self.authorization = None

    def request(self, method: str, url: str, data: bytes = None, headers=None):
        """(status, headers, body); retries once with credentials after a 401 challenge."""
        url = urllib.parse.urljoin(self.base, url)
        for attempt in (0, 1):
            h = dict(headers or {})
            if self.authorization:
                h["Authorization"] = self.authorization
            req = urllib.request.Request(url, data=data, method=method, headers=h)
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                body = e.read()
                if e.code == 401 and attempt == 0 and self.authenticate(e.headers.get("WWW-Authenticate", "")):
                    continue
                return e.code, e.headers, body
        raise AssertionError("unreachable")

    def authenticate(self, challenge: str) -> bool:
        scheme, _, params = challenge.partition(" ")
        fields = dict(part.split("=", 1) for part in _split_params(params))
        fields = {k.strip(): v.strip().strip('"') for k, v in fields.items()}
        basic = None
        if self.creds:
            basic = "Basic " + base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
        if scheme.lower() == "basic":
            if not basic:
                raise SystemExit(f"{self.registry} asks for credentials: set REGISTRY_USER and REGISTRY_PASSWORD")
            self.authorization = basic
            return True
        if scheme.lower() == "bearer" and "realm" in fields:
            query = {"service": fields.get("service", ""),
                     "scope": fields.get("scope", f"repository:{self.repository}:pull,push")}
            req = urllib.request.Request(fields["realm"] + "?" + urllib.parse.urlencode(query),
                                         headers={"Authorization": basic} if basic else {})
            with urllib.request.urlopen(req, timeout=60) as r:
                token = json.load(r)
            self.authorization = "Bearer " + (token.get("token") or token["access_token"])
            return True
        return False

    def has_blob(self, digest: str) -> bool:
        status, _, _ = self.request("HEAD", f"/v2/{self.repository}/blobs/{digest}")
        return status == 200

    def put_blob(self, digest: str, data: bytes):
        status, headers, body = self.request("POST", f"/v2/{self.repository}/blobs/uploads/", data=b"",
                                             headers={"Content-Length": "0"})
        if status != 202 or not headers.get("Location"):
            raise SystemExit(f"starting the upload of {digest}: HTTP {status} {body[:300]!r}")
        location = headers["Location"]
        sep = "&" if "?" in location else "?"
        status, _, body = self.request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", data=data,
                                       headers={"Content-Type": "application/octet-stream",
                                                "Content-Length": str(len(data))})
        if status != 201:
            raise SystemExit(f"uploading {digest}: HTTP {status} {body[:300]!r}")

    def put_manifest(self, reference: str, manifest: bytes) -> str:
        status, headers, body = self.request("PUT", f"/v2/{self.repository}/manifests/{reference}", data=manifest,
                                             headers={"Content-Type": MANIFEST_TYPE})
        if status != 201:
            raise SystemExit(f"putting the manifest as {reference}: HTTP {status} {body[:300]!r}")
        return headers.get("Docker-Content-Digest", "")


def _split_params(params: str):
    """key="value" pairs of a challenge, split on commas outside quotes."""
    out, cur, quoted = [], "", False
    for ch in params:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if "=" in cur:
        out.append(cur)
    return [p for p in out if "=" in p]


def push(layout: str, ref: str, plain_http: bool = False) -> str:
    """Pushes the layout's image to REGISTRY/REPO[:TAG]; returns the oci:// reference by digest."""
    registry, repository, tag = parse_reference(ref)
    desc, manifest, config, layer = read_layout(layout)
    manifest_obj = json.loads(manifest)
    reg = Registry(registry, repository, plain_http)
    for descriptor, data in ((manifest_obj["config"], config), (manifest_obj["layers"][0], layer)):
        if not reg.has_blob(descriptor["digest"]):
            reg.put_blob(descriptor["digest"], data)
    for reference in ([tag] if tag else []) + [desc["digest"]]:
        reported = reg.put_manifest(reference, manifest)
        if reported and reported != desc["digest"]:
            raise SystemExit(f"the registry stored the manifest as {reported}, not {desc['digest']}")
    return f"oci://{registry}/{repository}@{desc['digest']}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the OCI image layout of the module and verify it")
    b.add_argument("--wasm", default="target/inferguard.wasm")
    b.add_argument("--out", default="target/oci")
    b.add_argument("--repo", default="REGISTRY/inferguard", help="the repository the printed oci:// line names")
    u = sub.add_parser("push", help="push the layout's image to a registry")
    u.add_argument("--layout", default="target/oci")
    u.add_argument("--plain-http", action="store_true", help="HTTP instead of HTTPS (a local test registry)")
    u.add_argument("image", help="REGISTRY/REPOSITORY[:TAG]")
    args = p.parse_args()
    try:
        if args.command == "build":
            with open(args.wasm, "rb") as f:
                module = f.read()
            digest = write_layout(args.out, module)
            if verify_layout(args.out, module) != digest:
                raise LayoutError("index.json names another manifest than the one written")
            print(f"{args.out}: OCI image layout of {args.wasm} ({len(module)} bytes), verified")
            print(f"manifest digest: {digest}")
            print(f"skopeo: oci:{args.out}:{LAYOUT_REF}")
            print(f"  module: oci://{args.repo}@{digest}")
        else:
            print(push(args.layout, args.image, args.plain_http))
    except (LayoutError, ValueError, OSError) as e:
        sys.exit(f"oci.py: {e}")


if __name__ == "__main__":
    main()
