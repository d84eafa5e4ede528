#!/usr/bin/env bash
# The portcullis container image without a container engine: ./image/build.sh
#
# The Dockerfile needs Docker (or BuildKit/Podman), which these machines do not
# have. This script makes the same image from parts that need no daemon:
#
#   1. a static binary: `cargo build --release --locked` for x86_64-unknown-linux-musl
#      (rustup target; Debian's musl-tools for AWS-LC's C code), build paths
#      remapped so the bytes do not depend on where the tree was checked out;
#   2. one layer, written by image/layer.py: /usr/local/bin/portcullis, the CA
#      bundle rustls reads for https issuers (/etc/ssl/certs/ca-certificates.crt,
#      from Debian's ca-certificates), /etc/passwd and /etc/group naming 65532
#      `nonroot`; every entry owned by root, mode fixed, mtime = the commit's time
#      (SOURCE_DATE_EPOCH), sorted: the same inputs give the same layer digest;
#   3. the image: crane (go-containerregistry, from the Go module proxy) appends
#      that layer to an empty OCI base on a registry it serves on 127.0.0.1 for
#      the duration of the build, sets what the Dockerfile's runtime stage sets
#      (user 65532:65532, entrypoint, cmd, ports, labels, linux/amd64), validates
#      it, and pulls it out as an OCI image layout: image/out/oci/ (+ .tar).
#
# Then it checks what can be checked without running a container: the layout's
# blobs against their digests (crane validate), the config (non-root user,
# entrypoint, no shell in the filesystem), the binary extracted from the layer
# (static, `--version`, `check-config` and `serve` of a Tenuo-only config
# answering /readyz on 127.0.0.1 as UID 65532 when run as root).
# Prints the image digest. Load it with `skopeo copy oci:image/out/oci:<tag>
# docker-daemon:portcullis:<tag>` or `podman load -i image/out/portcullis.oci.tar`.
#
# Knobs: CRANE_VERSION (default below), IMAGE_TAG (default: the crate version).
set -euo pipefail

CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
TARGET=x86_64-unknown-linux-musl

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/image/out
TOOLS=$ROOT/.tools/bin
step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
TAG=${IMAGE_TAG:-$VERSION}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

step "tools: rustup target $TARGET, musl-gcc, crane $CRANE_VERSION"
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
if ! command -v musl-gcc >/dev/null; then
  [ "$(id -u)" = 0 ] || die "musl-gcc not found: apt-get install musl-tools"
  apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null
fi
[ -r /etc/ssl/certs/ca-certificates.crt ] || die "no /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
CRANE=$TOOLS/crane
if [ ! -x "$CRANE" ] || [ "$(cat "$TOOLS/../crane.version" 2>/dev/null)" != "$CRANE_VERSION" ]; then
  GOBIN=$TOOLS go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
  echo "$CRANE_VERSION" >"$TOOLS/../crane.version"
fi

step "cargo build --release --locked --target $TARGET (static)"
# Its own target directory: other RUSTFLAGS would rebuild the usual one.
export CARGO_TARGET_DIR=$ROOT/target/image
export RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$ROOT=/build --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
export AWS_LC_SYS_USE_SYSTEM=0 CC_x86_64_unknown_linux_musl=musl-gcc
cargo build --release --locked --target "$TARGET" --bin portcullis
BIN=$CARGO_TARGET_DIR/$TARGET/release/portcullis
file "$BIN" | grep -q 'static' || die "not a static binary: $(file "$BIN")"

step "layer (image/layer.py, mtime $SOURCE_DATE_EPOCH)"
rm -rf "$OUT" && mkdir -p "$OUT"
python3 image/layer.py "$OUT/layer.tar" "$BIN" /etc/ssl/certs/ca-certificates.crt
CA_PKG=$(dpkg-query -W -f='${Version}' ca-certificates 2>/dev/null || echo unknown)

step "image: crane on a registry at 127.0.0.1 (in memory, gone after the build)"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$CRANE" registry serve --address "127.0.0.1:$PORT" >"$OUT/registry.log" 2>&1 &
REG_PID=$!
trap 'kill "$REG_PID" 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
REF=127.0.0.1:$PORT/portcullis:$TAG
"$CRANE" append --insecure --oci-empty-base -f "$OUT/layer.tar" -t "$REF" >/dev/null
"$CRANE" mutate --insecure "$REF" -t "$REF" --set-platform linux/amd64 \
  --user 65532:65532 --workdir / \
  --entrypoint /usr/local/bin/portcullis --cmd serve,--config,/etc/portcullis/portcullis.yaml \
  --exposed-ports 9090/tcp,9091/tcp \
  -l org.opencontainers.image.title=portcullis \
  -l org.opencontainers.image.version="$VERSION" \
  -l org.opencontainers.image.revision="$REVISION" \
  -l org.opencontainers.image.licenses=Apache-2.0 \
  -l org.opencontainers.image.created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" \
  -l io.portcullis.ca-certificates="debian $CA_PKG" >/dev/null
"$CRANE" validate --insecure --remote "$REF"
DIGEST=$("$CRANE" digest --insecure "$REF")
"$CRANE" pull --insecure --format oci "$REF" "$OUT/oci"
"$CRANE" config --insecure "$REF" | python3 -m json.tool >"$OUT/config.json"
"$CRANE" manifest --insecure "$REF" | python3 -m json.tool >"$OUT/manifest.json"
(cd "$OUT/oci" && tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner -cf ../portcullis.oci.tar .)

step "checks"
python3 image/check.py "$OUT" "$DIGEST"
WORK=$(mktemp -d)
trap 'kill "$REG_PID" 2>/dev/null || true; [ -n "${SRV_PID:-}" ] && kill "$SRV_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
tar -xf "$OUT/layer.tar" -C "$WORK" usr/local/bin/portcullis
"$WORK/usr/local/bin/portcullis" --version
# Serve a minimal config on loopback and wait for /readyz, as the image's user when we can.
read -r GRPC ADMIN < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
# Tenuo only: a valid config that needs no IdP to be ready (the key is RFC 8032's test key).
cat >"$WORK/portcullis.yaml" <<EOF
listen: 127.0.0.1:$GRPC
admin_listen: 127.0.0.1:$ADMIN
tenuo:
  trusted_issuers: ["d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"]
  gateway:
    version: "1"
    settings: {}
    tools:
      read_file: {description: d, constraints: {path: {from: query, path: path, required: true}}}
    routes: [{pattern: /files, tool: read_file}]
EOF
chmod 0755 "$WORK" && chmod 0644 "$WORK/portcullis.yaml"
RUN=("$WORK/usr/local/bin/portcullis" serve --config "$WORK/portcullis.yaml")
[ "$(id -u)" = 0 ] && command -v setpriv >/dev/null && RUN=(setpriv --reuid=65532 --regid=65532 --clear-groups "${RUN[@]}")
"$WORK/usr/local/bin/portcullis" check-config --config "$WORK/portcullis.yaml"
"${RUN[@]}" >"$OUT/serve.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null || die "the image's binary did not become ready: $(tail -n 5 "$OUT/serve.log")"
echo "serve: ready on 127.0.0.1:$GRPC (admin $ADMIN) as uid $(ps -o uid= -p "$SRV_PID" | tr -d ' ')"

step "done"
echo "image:  $OUT/oci (OCI layout, tag $TAG) and $OUT/portcullis.oci.tar"
echo "digest: $DIGEST"
echo "layer:  $(sha256sum "$OUT/layer.tar" | cut -d' ' -f1) (sha256 of the uncompressed layer)"
echo "binary: $(sha256sum "$BIN" | cut -d' ' -f1)"
