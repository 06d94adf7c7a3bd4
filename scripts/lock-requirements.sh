#!/bin/sh
# Regenerate requirements.txt: this repository's core and plugins by path, and every
# third-party package they need pinned to the version a fresh install resolves today.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --upgrade pip
"$tmp/venv/bin/pip" install --quiet . ./plugins/*/
{
    echo "# Production install: pip install -r requirements.txt (regenerate: scripts/lock-requirements.sh)"
    echo "./"
    for p in plugins/*/pyproject.toml; do echo "./$(dirname "$p")"; done
    "$tmp/venv/bin/pip" freeze --all --exclude pip --exclude setuptools --exclude wheel | grep -v '^stevedores' | grep -v ' @ '
} > requirements.txt
echo "requirements.txt: $(grep -c '==' requirements.txt) pinned packages"
