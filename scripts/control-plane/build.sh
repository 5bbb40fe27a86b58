#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and Knative's two webhooks from their
# pinned Go modules into a cache directory keyed by versions.env, and prints that directory.
# Only the first build on a machine pays (25-45 min on 2 cores); later calls return at once.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
KEY=$(sha256sum "$HERE/versions.env" | cut -c1-16)
CACHE=${AISVC_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aiservice-operator/control-plane}
BIN=$CACHE/$KEY
NEEDED="etcd kube-apiserver kube-controller-manager serving-webhook eventing-webhook"

complete() { for b in $NEEDED; do [ -x "$BIN/bin/$b" ] || return 1; done; [ -d "$BIN/knative" ] && [ -d "$BIN/crds" ]; }
if complete; then echo "$BIN"; exit 0; fi
# --check: only say whether the binaries are built (exit 1 if not); never builds.
[ "${1:-}" = --check ] && exit 1
command -v go >/dev/null || { echo "control-plane: no Go toolchain on PATH (need Go >= 1.26)" >&2; exit 3; }

step() { echo "control-plane build: $* ($(date +%T))" >&2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/aisvc-cp-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
OUT=$BIN.tmp.$$
mkdir -p "$OUT/bin" "$OUT/knative"

moddir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }
modfile() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])'; }

# --- Kubernetes: a wrapper module replacing each staging module with its release ---------
step "kube-apiserver and kube-controller-manager $K8S_VERSION"
mkdir -p "$WORK/k8s" && cd "$WORK/k8s"
go mod init local/k8sbin >/dev/null 2>&1
go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
UPSTREAM=$(modfile "k8s.io/kubernetes@$K8S_VERSION")
# The staging list comes from k8s.io/kubernetes' own go.mod, so it follows each minor.
sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/.*|\1|p' "$UPSTREAM" | while read -r m; do
  go mod edit -replace="$m=$m@$K8S_STAGING_VERSION"
done
# godebug lines of a dependency are ignored; copy them to keep upstream's runtime defaults.
grep '^godebug' "$UPSTREAM" >> go.mod || true
go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" >&2
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
V="-X k8s.io/component-base/version"; C="-X k8s.io/client-go/pkg/version"
LDF="-s -w $V.gitVersion=$K8S_VERSION $V.gitMajor=1 $V.gitMinor=$MINOR $V.gitTreeState=clean"
LDF="$LDF $C.gitVersion=$K8S_VERSION $C.gitMajor=1 $C.gitMinor=$MINOR $C.gitTreeState=clean"
go build -trimpath -pgo=off -ldflags "$LDF" -o "$OUT/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager

# --- etcd ----------------------------------------------------------------------------
step "etcd $ETCD_VERSION"
mkdir -p "$WORK/etcd" && cd "$WORK/etcd"
go mod init local/etcdbin >/dev/null 2>&1
go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" go.etcd.io/etcd/server/v3

# --- Knative webhooks, and their config YAML from the same modules ----------------------
for repo in serving eventing; do
  if [ "$repo" = serving ]; then ver=$KNATIVE_SERVING_VERSION; else ver=$KNATIVE_EVENTING_VERSION; fi
  step "knative $repo webhook $ver"
  mkdir -p "$WORK/kn-$repo" && cd "$WORK/kn-$repo"
  go mod init "local/kn$repo" >/dev/null 2>&1
  go get "knative.dev/$repo/cmd/webhook@$ver" >&2
  pkg="knative.dev/$repo/cmd/webhook"
  if [ "$repo" = eventing ]; then
    # Eventing's webhook serves health probes on a hard-coded :8080, which would keep two
    # control planes (or anything else on 8080) off one machine. Build its main from a copy
    # with the probes disabled, as serving's webhook does; readiness is checked through the
    # apiserver instead.
    src=$(moddir "knative.dev/$repo@$ver")
    sed 's|sharedmain.WebhookMainWithContext(ctx,|sharedmain.WebhookMainWithContext(sharedmain.WithHealthProbesDisabled(ctx),|' \
      "$src/cmd/webhook/main.go" > main.go
    grep -q WithHealthProbesDisabled main.go || { echo "control-plane: eventing webhook main.go did not take the probes patch" >&2; exit 1; }
    pkg=.
  fi
  go build -trimpath -ldflags "-s -w" -o "$OUT/bin/$repo-webhook" "$pkg"
  src=$(moddir "knative.dev/$repo@$ver")
  mkdir -p "$OUT/knative/$repo"
  cp -r "$src/config/core" "$OUT/knative/$repo/"
  chmod -R u+w "$OUT/knative/$repo"
done

# --- prometheus-operator's monitor CRDs (YAML only) ----------------------------------------
step "prometheus-operator CRDs $PROMETHEUS_OPERATOR_VERSION"
src=$(moddir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
mkdir -p "$OUT/crds"
cp "$src"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,podmonitors}.yaml "$OUT/crds/"
chmod -R u+w "$OUT/crds"

rm -rf "$BIN"; mv "$OUT" "$BIN"
step "done: $BIN"
echo "$BIN"
