#!/usr/bin/env bash
# Installs Dex (the OIDC provider of tests/dex.rs) from the Go module proxy
# into .tools/bin/dex and prints that path on stdout (build output goes to
# stderr). Skipped when .tools/bin/dex was built from the pinned version.
#
# The version is pinned by tests/dex/go.mod + go.sum (`tool
# github.com/dexidp/dex/cmd/dex`): a pseudo-version of Dex's master, because
#   - Dex's tags (v2.x) are not versions of the module github.com/dexidp/dex
#     (no /v2 suffix), so `go install github.com/dexidp/dex/cmd/dex@v2.45.1`
#     cannot resolve; a tag's commit is reachable only as a pseudo-version;
#   - `go install …@version` refuses Dex's go.mod, which has a `replace`
#     directive (api/v2 => ./api/v2); building it as a tool of this small
#     module is the supported way around (the replace is ignored and
#     github.com/dexidp/dex/api/v2 comes from the proxy);
#   - the client-credentials grant (`oauth2.grantTypes: [client_credentials]`,
#     Dex PR #4583) is on master after v2.45.1, the newest tag.
# To move to another version: cd tests/dex && go get -tool
# github.com/dexidp/dex/cmd/dex@<version>.
#
# CGO is off: Dex's sqlite storage needs it, the tests use `storage: memory`.
# Go 1.25.8 or newer is needed (go.mod); with an older Go, export
# GOTOOLCHAIN=go1.27.3 first.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=$ROOT/.tools/bin
BIN=$BIN_DIR/dex
STAMP=$BIN_DIR/dex.version

command -v go >/dev/null || { echo "error: go not found (Go 1.25.8+ builds Dex)" >&2; exit 1; }

version=$(cd "$ROOT/tests/dex" && go list -m -f '{{.Version}}' github.com/dexidp/dex)
want="$version $(go env GOVERSION)"
if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "dex $version already in $BIN" >&2
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN_DIR"
echo "building dex $version with $(go env GOVERSION) (CGO off; a few minutes the first time)" >&2
start=$(date +%s)
(
  cd "$ROOT/tests/dex"
  CGO_ENABLED=0 GOBIN=$BIN_DIR go install \
    -ldflags "-X main.version=$version" github.com/dexidp/dex/cmd/dex
) >&2
echo "$want" > "$STAMP"
echo "dex $version built in $(($(date +%s) - start)) s" >&2
echo "$BIN"
