#!/usr/bin/env bash
# Stops the fake-gcs-server started by tests/gcs/start.sh and removes its state.
set -uo pipefail
state="${LS_GCS_STATE_DIR:-${TMPDIR:-/tmp}/ls-gcs-test}"
if [ -f "$state/pid" ]; then
  pid="$(cat "$state/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
fi
rm -rf "$state"
