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

ls_webdav_start() {
  local state="${LS_WEBDAV_STATE_DIR:-${TMPDIR:-/tmp}/ls-webdav-test}"
  if ! command -v rclone >/dev/null 2>&1; then
    bash "$(dirname "${BASH_SOURCE[0]}")/install.sh" || return 1
  fi
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    sleep 0.2
  fi
  rm -rf "$state"
  mkdir -p "$state/data"

  local port="${LS_WEBDAV_PORT:-}"
  if [ -z "$port" ]; then
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" || return 1
  fi
  local user="ls-test" pass="ls-test-pass-0123"
  # Every write goes through the server, so its directory cache never misses a change of
  # ours; short anyway so a test that looks at the data directory sees what is there.
  cat >"$state/cmd" <<CMD
exec rclone serve webdav "$state/data" --addr 127.0.0.1:$port --user $user --pass $pass --dir-cache-time 2s --poll-interval 0 --log-level ERROR
CMD

  # setsid: the server must not share the caller's process group, so a Ctrl-C in the
  # foreground job does not kill it before stop.sh runs.
  setsid bash "$state/cmd" >"$state/server.log" 2>&1 </dev/null &
  echo $! >"$state/pid"

  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "[webdav] rclone exited during startup:" >&2
      cat "$state/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  if [ "$i" = 100 ]; then
    echo "[webdav] rclone did not answer on 127.0.0.1:$port" >&2
    return 1
  fi

  export LS_WEBDAV_URL="http://127.0.0.1:$port"
  export LS_WEBDAV_USER="$user"
  export LS_WEBDAV_PASS="$pass"
  export LS_WEBDAV_DATA_DIR="$state/data"
  export LS_WEBDAV_STATE_DIR="$state"
  {
    echo "export LS_WEBDAV_URL=$LS_WEBDAV_URL"
    echo "export LS_WEBDAV_USER=$LS_WEBDAV_USER"
    echo "export LS_WEBDAV_PASS=$LS_WEBDAV_PASS"
    echo "export LS_WEBDAV_DATA_DIR=$LS_WEBDAV_DATA_DIR"
    echo "export LS_WEBDAV_STATE_DIR=$LS_WEBDAV_STATE_DIR"
  } >"$state/env"
  echo "[webdav] rclone serve webdav on $LS_WEBDAV_URL (pid $(cat "$state/pid"), data $state/data)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ls_webdav_start
  cat "${LS_WEBDAV_STATE_DIR:-${TMPDIR:-/tmp}/ls-webdav-test}/env"
else
  ls_webdav_start
fi
