#!/usr/bin/env bash
# Make headless Chromium available for the browser tests and benchmarks (idempotent).
# The tests drive /usr/bin/chromium with Playwright (pip package, pinned in the test extras);
# `playwright install` is never needed: the Debian chromium package is the browser.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -E"
    else
        echo "install-browser.sh: /usr/bin/chromium is missing and this is not root (no sudo): install the 'chromium' package" >&2
        exit 1
    fi
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
test -x /usr/bin/chromium
echo "install-browser.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
