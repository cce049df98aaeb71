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

# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"

# ls_gcs_answers PORT: whether fake-gcs-server on 127.0.0.1:PORT answers its JSON API.
ls_gcs_answers() {
  python3 - "$1" <<'PY'
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/storage/v1/b", timeout=1).read()
PY
}

ls_gcs_start() {
  local state
  state="$(ls_state_dir LS_GCS_STATE_DIR ls-gcs-test)"
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  local bin
  bin="$(bash "$here/install.sh" | tail -n 1)" || return 1
  if [ ! -x "$bin" ]; then
    echo "[gcs] fake-gcs-server binary not found ($bin)" >&2
    return 1
  fi
  ls_reset_state "$state" "$state/pid"

  local port
  port="$(ls_free_port)" || return 1
  local bucket="ls-test"

  ls_launch "$state/pid" "$state/server.log" "$bin" -scheme http -host 127.0.0.1 -port "$port" \
    -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" \
    -backend memory -log-level warn
  ls_wait_ready gcs fake-gcs-server "$port" "$state/pid" "$state/server.log" 100 \
    ls_gcs_answers "$port" || return 1
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
  ls_write_env "$state" LS_GCS_ENDPOINT LS_GCS_EMULATOR_HOST LS_GCS_BUCKET
  echo "[gcs] fake-gcs-server listening on $LS_GCS_ENDPOINT (pid $(cat "$state/pid"), bucket $bucket)" >&2
}

ls_start_main ls_gcs_start "$(ls_state_dir LS_GCS_STATE_DIR ls-gcs-test)"
