#!/usr/bin/env python3
"""Checks the built image without a container engine: check.py OUT DIGEST

- the OCI layout (image/out/oci): oci-layout version, index.json pointing at
  the manifest with DIGEST, every blob's sha256 equal to its file name and
  size equal to its descriptor's;
- the config: linux/amd64, user 65532:65532, the entrypoint and cmd, ports
  9090 and 9091, one layer whose diff_id is the sha256 of layer.tar;
- the layer: only the expected paths, all owned by root except the empty
  home of 65532, no shell or other executable besides portcullis.
Exits non-zero with the first difference found.
"""

import hashlib
import json
import sys
import tarfile
from pathlib import Path


def fail(msg):
    raise SystemExit(f"image check failed: {msg}")


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main():
    out, digest = Path(sys.argv[1]), sys.argv[2]
    layout = out / "oci"
    if json.loads((layout / "oci-layout").read_text()).get("imageLayoutVersion") != "1.0.0":
        fail("oci-layout version")
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests", [])
    if [m["digest"] for m in manifests] != [digest]:
        fail(f"index.json lists {[m['digest'] for m in manifests]}, expected {digest}")
    blobs = layout / "blobs" / "sha256"
    for blob in blobs.iterdir():
        if sha256(blob) != blob.name:
            fail(f"blob {blob.name} does not match its digest")

    def load(desc):
        path = blobs / desc["digest"].removeprefix("sha256:")
        if path.stat().st_size != desc["size"]:
            fail(f"blob {desc['digest']} size {path.stat().st_size}, descriptor says {desc['size']}")
        return json.loads(path.read_text())

    manifest = load(manifests[0])
    if manifest.get("mediaType") != "application/vnd.oci.image.manifest.v1+json":
        fail(f"manifest media type {manifest.get('mediaType')}")
    config = load(manifest["config"])
    c = config.get("config", {})
    want = {
        "os": (config.get("os"), "linux"),
        "architecture": (config.get("architecture"), "amd64"),
        "User": (c.get("User"), "65532:65532"),
        "Entrypoint": (c.get("Entrypoint"), ["/usr/local/bin/portcullis"]),
        "Cmd": (c.get("Cmd"), ["serve", "--config", "/etc/portcullis/portcullis.yaml"]),
        "ExposedPorts": (sorted(c.get("ExposedPorts", {})), ["9090/tcp", "9091/tcp"]),
    }
    for key, (got, expected) in want.items():
        if got != expected:
            fail(f"config {key} = {got!r}, expected {expected!r}")
    if len(manifest["layers"]) != 1:
        fail(f"{len(manifest['layers'])} layers, expected 1")
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if diff_ids != ["sha256:" + sha256(out / "layer.tar")]:
        fail(f"diff_ids {diff_ids} are not layer.tar's sha256")

    expected_paths = {
        "etc", "etc/group", "etc/passwd", "etc/portcullis", "etc/ssl", "etc/ssl/certs",
        "etc/ssl/certs/ca-certificates.crt", "home", "home/nonroot", "usr", "usr/local",
        "usr/local/bin", "usr/local/bin/portcullis",
    }
    with tarfile.open(out / "layer.tar") as tar:
        members = tar.getmembers()
    paths = {m.name.rstrip("/") for m in members}
    if paths != expected_paths:
        fail(f"layer paths differ: extra {sorted(paths - expected_paths)}, missing {sorted(expected_paths - paths)}")
    for m in members:
        name = m.name.rstrip("/")
        if name != "home/nonroot" and (m.uid, m.gid) != (0, 0):
            fail(f"{name} owned by {m.uid}:{m.gid}")
        if m.isfile() and m.mode & 0o111 and name != "usr/local/bin/portcullis":
            fail(f"{name} is executable")
        if m.mode & 0o6000:
            fail(f"{name} is setuid/setgid")
    print(f"image ok: {digest}, {len(members)} layer entries, user 65532:65532, no shell")


if __name__ == "__main__":
    main()
