#!/bin/sh
# System tools the tests and benchmarks use: Debian's chromium (browser tests), apache2-utils
# (ab), wrk (load), jq and curl (the troubleshooting commands of docs/deployment.md),
# redis-server (tests that break their own Redis; `redis-server --sentinel` is the Sentinel),
# haproxy (the fleet's balancer, deploy/haproxy.cfg), openssl (its drill certificate) and valgrind
# (make bench's instructions per request). Each
# missing one is installed with apt-get when we may; one that cannot be installed is reported
# and the others still are. Tests needing a missing tool skip with a reason, and fail under CI=true.
set -u
missing=""
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
need chromium chromium
need ab apache2-utils
need redis-server redis-server
need wrk wrk
need jq jq
need curl curl
need haproxy haproxy
need openssl openssl
need valgrind valgrind
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: not installed (needs root and apt-get):$missing; tests needing them will skip" >&2
    exit 0
fi
echo "installing:$missing"
apt-get update -qq >/dev/null || echo "warning: apt-get update failed" >&2
for package in $missing; do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null \
        || echo "warning: could not install $package; tests needing it will skip (fail under CI=true)" >&2
done
exit 0
