#!/usr/bin/env bash
# Make PostgreSQL and Redis server binaries available for the prod-profile tests (idempotent).
# The tests (artsim_pipeline_tests/prod/) start their own throwaway servers on free loopback
# ports in temp dirs (artsim_pipeline_tests/servers.py); this script only installs the Debian
# packages `postgresql` and `redis-server`. It never enables or starts the system services.
set -euo pipefail
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"

# Debian keeps initdb/postgres/pg_ctl under /usr/lib/postgresql/<major>/bin, off the PATH.
find_pg_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

missing=()
find_pg_bin >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

if [ "${#missing[@]}" -gt 0 ]; then
    APT_PACKAGES="${missing[*]}"
    # policy-rc.d exit 101 keeps dpkg from starting the services it installs (no systemd here
    # anyway; the tests start their own servers). Only ours is removed afterwards.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        added_policy=1
    fi
    trap 'if [ "$added_policy" = 1 ]; then as_root rm -f "$policy"; fi' EXIT
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || as_root apt-get install -y --no-install-recommends "${missing[@]}"  # again, loudly, to show why
fi

pg_bin="$(find_pg_bin)" || { echo "install-services.sh: PostgreSQL binaries (initdb, postgres) not found after install" >&2; exit 1; }
command -v redis-server >/dev/null 2>&1 || { echo "install-services.sh: redis-server not found after install" >&2; exit 1; }
echo "install-services.sh: $("$pg_bin/postgres" --version) ($pg_bin); $(redis-server --version | cut -d' ' -f1-3)"
