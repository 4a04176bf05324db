#!/usr/bin/env bash
# Make headless Chromium available for the browser tests and benchmarks (idempotent).
# The tests drive /usr/bin/chromium with Playwright (pip package, pinned in the test extras);
# `playwright install` is never needed: the Debian chromium package is the browser.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

APT_PACKAGES="chromium fonts-dejavu-core"
# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
test -x /usr/bin/chromium
echo "install-browser.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
