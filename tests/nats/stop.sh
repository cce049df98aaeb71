#!/usr/bin/env bash
# Stops the nats-server started by tests/nats/start.sh and removes its JetStream store.
set -uo pipefail
state="${LS_NATS_STATE_DIR:-${TMPDIR:-/tmp}/ls-nats-test}"
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
