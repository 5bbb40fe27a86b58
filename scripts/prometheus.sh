#!/usr/bin/env bash
# Start or stop a throwaway Prometheus from Debian's `prometheus` package, for tests and for
# watching a local rollout's metrics.
#
#   scripts/prometheus.sh start DIR PORT TARGET...   scrape TARGETs (host:port) every second,
#                                                    listen on 127.0.0.1:PORT, print its URL
#   scripts/prometheus.sh start DIR PORT --config F  the same with the scrape configuration F
#   scripts/prometheus.sh stop DIR                   stop it
#
# The scrape job is `revisions` with honor_labels (the targets' own namespace_name /
# revision_name labels are kept, as for Knative's queue-proxy). Data lives in DIR/data.
# Exit status 3: no prometheus binary on this machine (tests skip on it).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start DIR PORT TARGET... | stop DIR" >&2
  exit 2
fi

case "$cmd" in
  start)
    port=${3:?PORT is required}
    shift 3
    bin=${PROMETHEUS_BIN:-$(command -v prometheus || true)}
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
      echo "no prometheus binary found (install the Debian package prometheus; or set PROMETHEUS_BIN)" >&2
      exit 3
    fi
    mkdir -p "$dir/data"
    if [ "${1:-}" = "--config" ]; then
      cp "${2:?--config needs a file}" "$dir/prometheus.yml"
    else
      targets=""
      for t in "$@"; do targets="$targets'$t', "; done
      cat >"$dir/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: revisions
    honor_labels: true
    static_configs: [{targets: [${targets%, }]}]
YAML
    fi
    "$bin" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
      --web.listen-address="127.0.0.1:$port" --log.level=warn >"$dir/prometheus.log" 2>&1 &
    echo $! >"$dir/pid"
    url="http://127.0.0.1:$port"
    for _ in $(seq 1 150); do
      if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "$url/-/ready" 2>/dev/null; then
        echo "$url"
        exit 0
      fi
      if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        cat "$dir/prometheus.log" >&2
        exit 1
      fi
      sleep 0.1
    done
    echo "prometheus did not become ready in 15 s" >&2
    cat "$dir/prometheus.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$dir/pid" ]; then
      pid=$(cat "$dir/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$dir/pid"
    fi
    ;;
  *)
    echo "unknown command: $cmd" >&2
    exit 2
    ;;
esac
