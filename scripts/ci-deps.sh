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
