#!/usr/bin/env bash
# Builds helm (the version charts/test.sh pins) into <repo>/.tools/bin with `go install`
# from the Go module proxy, once; prints its path. tests/run.sh starts this in the
# background at its beginning, so the Go build overlaps the Rust one.
set -euo pipefail

HELM_VERSION=v3.22.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELM=$ROOT/.tools/bin/helm
if [ ! -x "$HELM" ] || [ "$("$HELM" version --template '{{.Version}}')" != "$HELM_VERSION" ]; then
  command -v go >/dev/null || { echo "error: go not found (needed once to build helm $HELM_VERSION)" >&2; exit 2; }
  echo "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION -> .tools/bin (once)" >&2
  # The link flags of helm's own Makefile: without them the binary calls itself "v3.22" and
  # assumes Kubernetes 1.20 (k8s.io modules v0.37 => 1.37), which the chart's kubeVersion refuses.
  h=helm.sh/helm/v3
  GOBIN=$ROOT/.tools/bin go install -ldflags "-X $h/internal/version.version=$HELM_VERSION \
    -X $h/pkg/lint/rules.k8sVersionMajor=1 -X $h/pkg/lint/rules.k8sVersionMinor=37 \
    -X $h/pkg/chartutil.k8sVersionMajor=1 -X $h/pkg/chartutil.k8sVersionMinor=37" \
    "$h/cmd/helm@$HELM_VERSION" >&2
fi
echo "$HELM"
