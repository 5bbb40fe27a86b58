#!/usr/bin/env bash
# A real S3 server (SeaweedFS) on loopback for the object-storage tests (docs/claim-check.md).
#
#   scripts/s3.sh build                build (first time) and print the cached `weed` binary
#   scripts/s3.sh built                exit 0 (and print the binary) if it is built; never builds
#   scripts/s3.sh start DIR [PORT] [BUCKET...]
#                                      start it with its data in DIR, S3 on 127.0.0.1:PORT
#                                      (default 18333), create the buckets, print the endpoint
#   scripts/s3.sh stop DIR             stop it (its data stays; `start` resumes it)
#   scripts/s3.sh destroy DIR          stop it and delete DIR
#   scripts/s3.sh env DIR              print AWS_* lines (endpoint, keys, region) for a shell
#
# The server takes signed requests only (AWS signature v4): one identity whose keys are in
# DIR/credentials (generated at first start). Its other ports (master, volume, filer and their
# gRPC ports) are PORT+1..PORT+3 and PORT+10001..PORT+10003, all on 127.0.0.1.
# Exit status 3: no Go toolchain to build with (tests skip on it, except under CI=true).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

# SeaweedFS as served by the Go module proxy; bump both lines together.
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
SEAWEEDFS_MODULE=github.com/seaweedfs/seaweedfs
CACHE=${AISVC_S3_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aiservice-operator/seaweedfs}
WEED=$CACHE/$SEAWEEDFS_VERSION/weed

build() {
  if [ -x "$WEED" ]; then echo "$WEED"; return 0; fi
  command -v go >/dev/null || { echo "s3: no Go toolchain on PATH (need Go >= 1.26)" >&2; exit 3; }
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  local src out
  echo "s3 build: seaweedfs $SEAWEEDFS_VERSION ($(date +%T))" >&2
  # Built inside the module's own folder, so its go.mod/go.sum (pins and replace directives)
  # hold exactly as upstream builds it; -mod=readonly because the module cache is read-only.
  src=$(go mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  out=$WEED.tmp.$$
  mkdir -p "$(dirname "$WEED")"
  (cd "$src" && GOFLAGS=-mod=readonly go build -buildvcs=false -trimpath -ldflags "-s -w" -o "$out" ./weed)
  mv "$out" "$WEED"
  echo "s3 build: done ($(date +%T))" >&2
  echo "$WEED"
}

cmd=${1:-}
dir=${2:-}
port=${3:-18333}

creds() { # the identity's keys, generated once per DIR
  if [ ! -f "$dir/credentials" ]; then
    umask 077
    printf 'AWS_ACCESS_KEY_ID=aisvc%s\nAWS_SECRET_ACCESS_KEY=%s\n' \
      "$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
      "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$dir/credentials"
  fi
  # shellcheck disable=SC1091
  . "$dir/credentials"
}

envlines() {
  creds
  echo "AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$dir/port")"
  echo "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
  echo "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
  echo "AWS_DEFAULT_REGION=us-east-1"
}

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local weed pid
  weed=$(build)
  mkdir -p "$dir/data"
  creds
  cat >"$dir/s3.json" <<JSON
{"identities": [{"name": "aisvc", "credentials": [{"accessKey": "$AWS_ACCESS_KEY_ID",
  "secretKey": "$AWS_SECRET_ACCESS_KEY"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
  echo "$port" >"$dir/port"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then :; else
    # Small volumes: tests store megabytes, and each volume reserves its size limit.
    setsid "$weed" server -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.port=$((port + 1)) -volume.port=$((port + 2)) -filer -filer.port=$((port + 3)) \
      -master.volumeSizeLimitMB=256 -volume.max=16 \
      -s3 -s3.port="$port" -s3.port.grpc=$((port + 10000)) -s3.config="$dir/s3.json" \
      >"$dir/server.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/pid"
  fi
  for _ in $(seq 1 300); do
    up "$port" && up $((port + 3)) && break
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || { tail -30 "$dir/server.log" >&2; exit 1; }
    sleep 0.2
  done
  up "$port" || { echo "s3: no server on 127.0.0.1:$port after 60s" >&2; tail -30 "$dir/server.log" >&2; exit 1; }
  shift 3 2>/dev/null || shift $#
  for bucket in "$@"; do
    for try in $(seq 1 50); do
      out=$(echo "s3.bucket.create -name $bucket" | "$weed" shell -master="127.0.0.1:$((port + 1))" \
        -filer="127.0.0.1:$((port + 3))" 2>&1) || true
      echo "$out" | grep -qi "error\|fail" || break
      echo "$out" | grep -qi "already exist" && break
      [ "$try" = 50 ] && { echo "s3: cannot create bucket $bucket: $out" >&2; exit 1; }
      sleep 0.2
    done
  done
  echo "http://127.0.0.1:$port"
}

stop() {
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
  fi
}

case "$cmd" in
  build) build ;;
  built) [ -x "$WEED" ] && echo "$WEED" ;;
  start|stop|destroy|env)
    [ -n "$dir" ] || { echo "usage: $0 $cmd DIR" >&2; exit 2; }
    case "$cmd" in
      start) start "$@" ;;
      stop) stop ;;
      destroy) stop; rm -rf "$dir" ;;
      env) envlines ;;
    esac
    ;;
  *) echo "usage: $0 build|built|start DIR [PORT] [BUCKET...]|stop DIR|destroy DIR|env DIR" >&2; exit 2 ;;
esac
