#!/usr/bin/env bash
# Set-up for cnnsearch and its tests on a fresh Debian machine: the Python package with its
# test tools, plus the system packages the tests use for real (a PostgreSQL server for the
# many-machines tests, Chromium for the report's browser test). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} (sudo apt-get install ${need[*]}); continuing" >&2
  fi
fi
python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
echo "setup: done (python $(python3 -c 'import sys; print(sys.version.split()[0])'))"
