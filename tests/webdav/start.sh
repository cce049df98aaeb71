#!/usr/bin/env bash
# Starts `rclone serve webdav` (basic auth, a directory as storage) on 127.0.0.1 for the WebDAV
# backend tests. Meant to be sourced (tests/run-all.sh does) so the LS_WEBDAV_* variables reach
# cargo test; running it with bash prints them as `export` lines instead.
#
#   source tests/webdav/start.sh   # exports LS_WEBDAV_URL, LS_WEBDAV_USER, LS_WEBDAV_PASS, LS_WEBDAV_DATA_DIR
#   bash tests/webdav/stop.sh
#
# LS_WEBDAV_PORT picks the port (default: a free one); tests that restart the server reuse
# LS_WEBDAV_STATE_DIR/cmd. Installs rclone with tests/webdav/install.sh when it is missing.

# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"

ls_webdav_start() {
  local state
  state="$(ls_state_dir LS_WEBDAV_STATE_DIR ls-webdav-test)"
  if ! command -v rclone >/dev/null 2>&1; then
    bash "$(dirname "${BASH_SOURCE[0]}")/install.sh" || return 1
  fi
  ls_reset_state "$state" "$state/pid"
  mkdir -p "$state/data"

  local port
  port="${LS_WEBDAV_PORT:-$(ls_free_port)}" || return 1
  local user="ls-test" pass="ls-test-pass-0123"
  # Every write goes through the server, so its directory cache never misses a change of
  # ours; short anyway so a test that looks at the data directory sees what is there.
  cat >"$state/cmd" <<CMD
exec rclone serve webdav "$state/data" --addr 127.0.0.1:$port --user $user --pass $pass --dir-cache-time 2s --poll-interval 0 --log-level ERROR
CMD

  ls_launch "$state/pid" "$state/server.log" bash "$state/cmd"
  ls_wait_ready webdav rclone "$port" "$state/pid" "$state/server.log" 100 || return 1

  export LS_WEBDAV_URL="http://127.0.0.1:$port"
  export LS_WEBDAV_USER="$user"
  export LS_WEBDAV_PASS="$pass"
  export LS_WEBDAV_DATA_DIR="$state/data"
  export LS_WEBDAV_STATE_DIR="$state"
  ls_write_env "$state" LS_WEBDAV_URL LS_WEBDAV_USER LS_WEBDAV_PASS LS_WEBDAV_DATA_DIR \
    LS_WEBDAV_STATE_DIR
  echo "[webdav] rclone serve webdav on $LS_WEBDAV_URL (pid $(cat "$state/pid"), data $state/data)" >&2
}

ls_start_main ls_webdav_start "$(ls_state_dir LS_WEBDAV_STATE_DIR ls-webdav-test)"
