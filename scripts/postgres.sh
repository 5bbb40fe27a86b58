#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster for tests, from Debian's packages.
#
#   scripts/postgres.sh start DIR [PORT]   initdb into DIR (if empty), start it, print its DSN
#   scripts/postgres.sh stop DIR           stop it (fast shutdown); `start` again resumes it
#   scripts/postgres.sh destroy DIR        stop it and delete its data
#   scripts/postgres.sh dsn DIR            print the DSN of a cluster started earlier
#
# The server listens on a unix socket inside DIR and on 127.0.0.1:PORT (default 55432).
# PostgreSQL refuses to run as root, so under root the cluster is owned by and run as the
# `postgres` system user. fsync is off: this cluster is for tests that kill the *client*
# (the event store) mid-stream, never the database server, and it must start in seconds.
# PG_DURABLE=1 keeps PostgreSQL's durable defaults (fsync, full-page writes) instead: for
# benchmarks whose figures must hold for a production server.
# Exit status 3: no PostgreSQL binaries on this machine (tests skip on it).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
port=${3:-55432}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop|destroy|dsn DIR [PORT]" >&2
  exit 2
fi

bindir=${PG_BINDIR:-}
if [ -z "$bindir" ]; then
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && bindir=$d
  done
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
  echo "no PostgreSQL binaries found (looked in /usr/lib/postgresql/*/bin; set PG_BINDIR)" >&2
  exit 3
fi

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

dsn() {
  echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
}

# Where the cluster lives: DIR itself, or (under root, when the `postgres` user cannot
# reach DIR, e.g. inside a 0700 temp dir) a postgres-owned dir under /tmp named in DIR/home.
home() {
  if [ -f "$dir/home" ]; then cat "$dir/home"; else echo "$dir"; fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ] && [ ! -f "$dir/home" ]; then
      if runuser -u postgres -- test -x "$dir" 2>/dev/null; then
        chown postgres: "$dir"
      else
        h=$(mktemp -d /tmp/aisvc-pg.XXXXXX)
        chown postgres: "$h"
        echo "$h" >"$dir/home"
      fi
    fi
    h=$(home)
    if [ ! -f "$h/data/PG_VERSION" ]; then
      as_owner "$bindir/initdb" -D "$h/data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    echo "$port" >"$dir/port"
    durability="-c fsync=off -c full_page_writes=off"
    if [ "${PG_DURABLE:-0}" = 1 ]; then durability="-c fsync=on -c synchronous_commit=on"; fi
    as_owner "$bindir/pg_ctl" -D "$h/data" -l "$h/server.log" -w -t 30 \
      -o "-p $port -k $h -c listen_addresses=127.0.0.1 $durability" \
      start >/dev/null || { cat "$h/server.log" >&2; exit 1; }
    dsn
    ;;
  stop|destroy)
    h=$(home)
    if [ -f "$h/data/postmaster.pid" ]; then
      as_owner "$bindir/pg_ctl" -D "$h/data" -m fast -w stop >/dev/null
    fi
    if [ "$cmd" = destroy ]; then
      rm -rf "$h/data" "$h/server.log"
      if [ -f "$dir/home" ]; then
        rm -rf "$h" "$dir/home"
      fi
    fi
    ;;
  dsn)
    dsn
    ;;
  *)
    echo "unknown command: $cmd" >&2
    exit 2
    ;;
esac
