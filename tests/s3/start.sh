#!/usr/bin/env bash
# Starts s3s-fs (an S3 server that checks SigV4 signatures) on 127.0.0.1 for the S3 backend
# tests. Meant to be sourced (tests/run-all.sh does) so the LS_S3_* variables reach cargo test;
# running it with bash prints them as `export` lines instead.
#
#   source tests/s3/start.sh   # exports LS_S3_ENDPOINT, LS_S3_ACCESS_KEY, LS_S3_SECRET_KEY, LS_S3_BUCKET
#   bash tests/s3/stop.sh
#
# Installs s3s-fs with `cargo install s3s-fs --version 0.14.1 --features binary --locked` when
# it is not on PATH.

# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"

ls_s3_start() {
  local state
  state="$(ls_state_dir LS_S3_STATE_DIR ls-s3-test)"
  if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "[s3] installing s3s-fs 0.14.1" >&2
    cargo install --quiet s3s-fs --version 0.14.1 --features binary --locked || return 1
  fi
  ls_reset_state "$state" "$state/pid"

  local port
  port="$(ls_free_port)" || return 1
  local access_key="ls-test-access" secret_key="ls-test-secret-key-0123456789" bucket="ls-test"
  # s3s-fs maps buckets to directories under its root.
  mkdir -p "$state/data/$bucket"

  ls_launch "$state/pid" "$state/server.log" s3s-fs --host 127.0.0.1 --port "$port" \
    --access-key "$access_key" --secret-key "$secret_key" "$state/data"
  ls_wait_ready s3 s3s-fs "$port" "$state/pid" "$state/server.log" 100 || return 1

  export LS_S3_ENDPOINT="http://127.0.0.1:$port"
  export LS_S3_ACCESS_KEY="$access_key"
  export LS_S3_SECRET_KEY="$secret_key"
  export LS_S3_BUCKET="$bucket"
  export LS_S3_DATA_DIR="$state/data"
  # No test may fall through to the EC2 metadata address when it lacks keys.
  export AWS_EC2_METADATA_DISABLED=true
  ls_write_env "$state" LS_S3_ENDPOINT LS_S3_ACCESS_KEY LS_S3_SECRET_KEY LS_S3_BUCKET \
    LS_S3_DATA_DIR AWS_EC2_METADATA_DISABLED
  echo "[s3] s3s-fs listening on $LS_S3_ENDPOINT (pid $(cat "$state/pid"), data $state/data)" >&2
}

ls_start_main ls_s3_start "$(ls_state_dir LS_S3_STATE_DIR ls-s3-test)"
