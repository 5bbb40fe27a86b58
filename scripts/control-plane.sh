#!/usr/bin/env bash
# The real control plane the cluster test tier runs against (docs/testing.md).
#
#   scripts/control-plane.sh build   build (first time) and print the cached binaries' folder
#   scripts/control-plane.sh built   exit 0 (and print the folder) if the binaries are built
#   scripts/control-plane.sh up      start it on loopback, print the admin kubeconfig's path
#   scripts/control-plane.sh down    stop it and remove its state folder
#   scripts/control-plane.sh build-eventing|built-eventing   the same for Knative Eventing's
#                                    data plane, CoreDNS and kube-proxy (a second cache entry)
#   scripts/control-plane.sh up --with-eventing   also run that data plane (needs root: it
#                                    makes network namespaces; see docs/testing.md)
#   scripts/control-plane.sh pod NAME [--service NS/SVC] -- ARGV...   a test's process in
#                                    a network namespace of that data plane
#
# State folder: AISVC_CLUSTER_DIR (default .cluster/ in the checkout). Exit status 3: no Go
# toolchain to build with.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
case "${1:-}" in
  build) exec bash scripts/control-plane/build.sh ;;
  built) exec bash scripts/control-plane/build.sh --check ;;
  build-eventing) exec bash scripts/control-plane/build-eventing.sh ;;
  built-eventing) exec bash scripts/control-plane/build-eventing.sh --check ;;
  up|down|stop|start|restart|pod) exec "$py" scripts/control-plane/cluster.py "$@" ;;
  *) echo "usage: $0 build|built|build-eventing|built-eventing|up [--with-eventing]|down|pod" >&2; exit 2 ;;
esac
