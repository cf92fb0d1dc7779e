#!/usr/bin/env bash
# Sourced by the README's commands: a fresh machine needs only python3 and PyPI.
# Creates .venv and installs the locked dependencies whenever the lock or pyproject changed.
set -euo pipefail
RTCFLEET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RTCFLEET_VENV="${RTCFLEET_VENV:-$RTCFLEET_ROOT/.venv}"
export RTCFLEET_ROOT RTCFLEET_VENV

if [ ! -x "$RTCFLEET_VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$RTCFLEET_VENV"
fi
stamp="$RTCFLEET_VENV/.rtcfleet-installed"
want="$(cat "$RTCFLEET_ROOT/requirements.lock" "$RTCFLEET_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "rtcfleet: installing dependencies into $RTCFLEET_VENV" >&2
  "$RTCFLEET_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.4,<1"
  "$RTCFLEET_VENV/bin/uv" pip sync --quiet --compile-bytecode --python "$RTCFLEET_VENV/bin/python" "$RTCFLEET_ROOT/requirements.lock"
  "$RTCFLEET_VENV/bin/uv" pip install --quiet --python "$RTCFLEET_VENV/bin/python" --no-deps -e "$RTCFLEET_ROOT"
  echo "$want" > "$stamp"
fi
