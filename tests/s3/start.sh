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

ls_s3_start() {
  local state="${LS_S3_STATE_DIR:-${TMPDIR:-/tmp}/ls-s3-test}"
  if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "[s3] installing s3s-fs 0.14.1" >&2
    cargo install --quiet s3s-fs --version 0.14.1 --features binary --locked || return 1
  fi
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    sleep 0.2
  fi
  rm -rf "$state"
  mkdir -p "$state/data"

  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" || return 1
  local access_key="ls-test-access" secret_key="ls-test-secret-key-0123456789" bucket="ls-test"
  # s3s-fs maps buckets to directories under its root.
  mkdir -p "$state/data/$bucket"

  # setsid: the server must not share the caller's process group, so a Ctrl-C in the
  # foreground job does not kill it before stop.sh runs.
  setsid s3s-fs --host 127.0.0.1 --port "$port" \
    --access-key "$access_key" --secret-key "$secret_key" \
    "$state/data" >"$state/server.log" 2>&1 </dev/null &
  echo $! >"$state/pid"

  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "[s3] s3s-fs exited during startup:" >&2
      cat "$state/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  if [ "$i" = 100 ]; then
    echo "[s3] s3s-fs did not answer on 127.0.0.1:$port" >&2
    return 1
  fi

  export LS_S3_ENDPOINT="http://127.0.0.1:$port"
  export LS_S3_ACCESS_KEY="$access_key"
  export LS_S3_SECRET_KEY="$secret_key"
  export LS_S3_BUCKET="$bucket"
  export LS_S3_DATA_DIR="$state/data"
  # No test may fall through to the EC2 metadata address when it lacks keys.
  export AWS_EC2_METADATA_DISABLED=true
  {
    echo "export LS_S3_ENDPOINT=$LS_S3_ENDPOINT"
    echo "export LS_S3_ACCESS_KEY=$LS_S3_ACCESS_KEY"
    echo "export LS_S3_SECRET_KEY=$LS_S3_SECRET_KEY"
    echo "export LS_S3_BUCKET=$LS_S3_BUCKET"
    echo "export LS_S3_DATA_DIR=$LS_S3_DATA_DIR"
    echo "export AWS_EC2_METADATA_DISABLED=true"
  } >"$state/env"
  echo "[s3] s3s-fs listening on $LS_S3_ENDPOINT (pid $(cat "$state/pid"), data $state/data)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ls_s3_start
  cat "${LS_S3_STATE_DIR:-${TMPDIR:-/tmp}/ls-s3-test}/env"
else
  ls_s3_start
fi
