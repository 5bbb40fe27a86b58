#!/usr/bin/env bash
# Builds Knative Eventing's controllers and channel-based Broker data plane, CoreDNS and
# kube-proxy from their pinned Go modules into a cache directory keyed by versions.env and
# versions-eventing.env, and prints that directory. Only the first build on a machine pays.
#
#   build-eventing.sh           build if needed, print the folder
#   build-eventing.sh --check   exit 0 (and print the folder) only if built
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
# shellcheck source=versions-eventing.env
. "$HERE/versions-eventing.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
KEY=$(cat "$HERE/versions.env" "$HERE/versions-eventing.env" | sha256sum | cut -c1-16)
CACHE=${AISVC_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aiservice-operator/control-plane}
BIN=$CACHE/eventing-$KEY
# Knative Eventing's processes, by the name their Deployment gives the container.
KNATIVE="controller:cmd/controller mt-broker-controller:cmd/mtchannel_broker"
KNATIVE="$KNATIVE broker-ingress:cmd/broker/ingress broker-filter:cmd/broker/filter"
KNATIVE="$KNATIVE imc-controller:cmd/in_memory/channel_controller imc-dispatcher:cmd/in_memory/channel_dispatcher"
NEEDED="eventing-controller mt-broker-controller broker-ingress broker-filter imc-controller imc-dispatcher coredns kube-proxy"

complete() { for b in $NEEDED; do [ -x "$BIN/bin/$b" ] || return 1; done; [ -d "$BIN/knative" ]; }
if complete; then echo "$BIN"; exit 0; fi
[ "${1:-}" = --check ] && exit 1
command -v go >/dev/null || { echo "control-plane: no Go toolchain on PATH (need Go >= 1.26)" >&2; exit 3; }

step() { echo "eventing build: $* ($(date +%T))" >&2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/aisvc-ev-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
OUT=$BIN.tmp.$$
mkdir -p "$OUT/bin" "$OUT/knative"
moddir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }
modfile() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])'; }

# --- Knative Eventing: controllers, broker ingress/filter, in-memory channel ---------------
step "knative eventing data plane $KNATIVE_EVENTING_VERSION"
mkdir -p "$WORK/kn" && cd "$WORK/kn"
go mod init local/kneventing >/dev/null 2>&1
pkgs=""
for pair in $KNATIVE; do pkgs="$pkgs knative.dev/eventing/${pair#*:}@$KNATIVE_EVENTING_VERSION"; done
# shellcheck disable=SC2086
go get $pkgs >&2
for pair in $KNATIVE; do
  name=${pair%%:*}; [ "$name" = controller ] && name=eventing-controller
  go build -trimpath -ldflags "-s -w" -o "$OUT/bin/$name" "knative.dev/eventing/${pair#*:}"
done
src=$(moddir "knative.dev/eventing@$KNATIVE_EVENTING_VERSION")
cp -r "$src/config/brokers" "$src/config/channels" "$OUT/knative/"
chmod -R u+w "$OUT/knative"

# --- kube-proxy: the same wrapper-module recipe as kube-apiserver (build.sh) ---------------
step "kube-proxy $K8S_VERSION"
mkdir -p "$WORK/k8s" && cd "$WORK/k8s"
go mod init local/k8sproxy >/dev/null 2>&1
go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
UPSTREAM=$(modfile "k8s.io/kubernetes@$K8S_VERSION")
sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/.*|\1|p' "$UPSTREAM" | while read -r m; do
  go mod edit -replace="$m=$m@$K8S_STAGING_VERSION"
done
grep '^godebug' "$UPSTREAM" >> go.mod || true
go get "k8s.io/kubernetes/cmd/kube-proxy@$K8S_VERSION" >&2
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
V="-X k8s.io/component-base/version"; C="-X k8s.io/client-go/pkg/version"
LDF="-s -w $V.gitVersion=$K8S_VERSION $V.gitMajor=1 $V.gitMinor=$MINOR $V.gitTreeState=clean"
LDF="$LDF $C.gitVersion=$K8S_VERSION $C.gitMajor=1 $C.gitMinor=$MINOR $C.gitTreeState=clean"
go build -trimpath -pgo=off -ldflags "$LDF" -o "$OUT/bin/kube-proxy" k8s.io/kubernetes/cmd/kube-proxy

# --- CoreDNS with only the plugins the tier's Corefile uses -------------------------------
step "coredns $COREDNS_VERSION"
mkdir -p "$WORK/coredns" && cd "$WORK/coredns"
go mod init local/coredns >/dev/null 2>&1
cat > main.go <<'GO'
// CoreDNS with the kubernetes, errors, log and ready plugins only (the upstream main links
// every plugin, and their cloud SDKs, through core/plugin).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	dnsserver.Directives = []string{"errors", "log", "ready", "kubernetes"}
	coremain.Run()
}
GO
# coremain, not the module root: the root main links every plugin and its cloud SDKs.
go get "github.com/coredns/coredns/coremain@$COREDNS_VERSION" >&2
go mod tidy >&2
go build -trimpath -ldflags "-s -w" -o "$OUT/bin/coredns" .

rm -rf "$BIN"; mv "$OUT" "$BIN"
step "done: $BIN"
echo "$BIN"
