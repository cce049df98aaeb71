#!/usr/bin/env bash
# Starts fake-gcs-server (in memory, plain HTTP) on 127.0.0.1 for the GCS backend tests and
# creates the test bucket. Meant to be sourced (tests/run-all.sh does) so the LS_GCS_* variables
# reach cargo test; running it with bash prints them as `export` lines instead.
#
#   source tests/gcs/start.sh   # exports LS_GCS_ENDPOINT, LS_GCS_BUCKET, LS_GCS_EMULATOR_HOST
#   bash tests/gcs/stop.sh
#
# Litestream and our binaries reach it through STORAGE_EMULATOR_HOST=$LS_GCS_EMULATOR_HOST,
# which the tests set for the processes they start (not for the whole shell, so that nothing
# else is pointed at the emulator by accident).

ls_gcs_start() {
  local state="${LS_GCS_STATE_DIR:-${TMPDIR:-/tmp}/ls-gcs-test}"
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  local bin
  bin="$(bash "$here/install.sh" | tail -n 1)" || return 1
  if [ ! -x "$bin" ]; then
    echo "[gcs] fake-gcs-server binary not found ($bin)" >&2
    return 1
  fi
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    sleep 0.2
  fi
  rm -rf "$state"
  mkdir -p "$state"

  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" || return 1
  local bucket="ls-test"

  # setsid: the server must not share the caller's process group, so a Ctrl-C in the
  # foreground job does not kill it before stop.sh runs.
  setsid "$bin" -scheme http -host 127.0.0.1 -port "$port" \
    -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" \
    -backend memory -log-level warn >"$state/server.log" 2>&1 </dev/null &
  echo $! >"$state/pid"

  local i ok=0
  for i in $(seq 1 100); do
    if python3 - "$port" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/storage/v1/b", timeout=1).read()
PY
    then
      ok=1
      break
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "[gcs] fake-gcs-server exited during startup:" >&2
      cat "$state/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then
    echo "[gcs] fake-gcs-server did not answer on 127.0.0.1:$port" >&2
    return 1
  fi
  python3 - "$port" "$bucket" <<'PY' || { echo "[gcs] could not create bucket $bucket" >&2; return 1; }
import json, sys, urllib.request
port, bucket = sys.argv[1], sys.argv[2]
req = urllib.request.Request(
    f"http://127.0.0.1:{port}/storage/v1/b?project=ls-test",
    data=json.dumps({"name": bucket}).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
urllib.request.urlopen(req, timeout=5).read()
PY

  export LS_GCS_ENDPOINT="http://127.0.0.1:$port"
  export LS_GCS_EMULATOR_HOST="127.0.0.1:$port"
  export LS_GCS_BUCKET="$bucket"
  {
    echo "export LS_GCS_ENDPOINT=$LS_GCS_ENDPOINT"
    echo "export LS_GCS_EMULATOR_HOST=$LS_GCS_EMULATOR_HOST"
    echo "export LS_GCS_BUCKET=$LS_GCS_BUCKET"
  } >"$state/env"
  echo "[gcs] fake-gcs-server listening on $LS_GCS_ENDPOINT (pid $(cat "$state/pid"), bucket $bucket)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ls_gcs_start
  cat "${LS_GCS_STATE_DIR:-${TMPDIR:-/tmp}/ls-gcs-test}/env"
else
  ls_gcs_start
fi
