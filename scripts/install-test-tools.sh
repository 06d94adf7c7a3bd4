#!/bin/sh
# System tools the tests and benchmarks use: Debian's chromium (browser tests), apache2-utils
# (ab), wrk (load), jq (the troubleshooting commands of docs/deployment.md),
# redis-server (tests that break their own Redis). Installed with apt-get when
# missing and we may; otherwise the tests that need them skip with a reason
# (and fail under CI=true).
set -eu
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v ab >/dev/null 2>&1 || missing="$missing apache2-utils"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v jq >/dev/null 2>&1 || missing="$missing jq"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "note: not installed (need root and apt-get):$missing; tests needing them will skip" >&2
fi
