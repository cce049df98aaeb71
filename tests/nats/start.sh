#!/usr/bin/env bash
# Starts nats-server with JetStream (a password user) on 127.0.0.1 for the NATS
# backend tests. Meant to be sourced (tests/run-all.sh does) so the LS_NATS_* variables reach
# cargo test; running it with bash prints them as `export` lines instead.
#
#   source tests/nats/start.sh   # exports LS_NATS_URL, LS_NATS_USER, LS_NATS_PASS, LS_NATS_STATE_DIR
#   bash tests/nats/stop.sh
#
# LS_NATS_PORT picks the port (default: a free one); tests that restart the server reuse
# LS_NATS_STATE_DIR/cmd (same port, same JetStream store). The tests create the object store
# buckets they use, as Litestream expects them to exist. Installs nats-server with
# tests/nats/install.sh when it is missing.

ls_nats_start() {
  local state="${LS_NATS_STATE_DIR:-${TMPDIR:-/tmp}/ls-nats-test}"
  if ! command -v nats-server >/dev/null 2>&1; then
    bash "$(dirname "${BASH_SOURCE[0]}")/install.sh" || return 1
  fi
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    sleep 0.2
  fi
  rm -rf "$state"
  mkdir -p "$state/js"

  local port="${LS_NATS_PORT:-}"
  if [ -z "$port" ]; then
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" || return 1
  fi
  local user="ls-test" pass="ls-test-pass-0123"
  # A password is required, except that a client without credentials is taken as that
  # user (no_auth_user): Litestream 0.5.17 drops the user and password of a nats:// URL, so
  # `litestream restore nats://...` connects without any.
  cat >"$state/server.conf" <<CONF
authorization {
  users = [ { user: "$user", password: "$pass" } ]
}
no_auth_user: "$user"
CONF
  cat >"$state/cmd" <<CMD
exec nats-server -js -a 127.0.0.1 -p $port -sd "$state/js" -c "$state/server.conf"
CMD

  # setsid: the server must not share the caller's process group, so a Ctrl-C in the
  # foreground job does not kill it before stop.sh runs.
  setsid bash "$state/cmd" >"$state/server.log" 2>&1 </dev/null &
  echo $! >"$state/pid"

  local i
  for i in $(seq 1 100); do
    if grep -q "Server is ready" "$state/server.log" 2>/dev/null &&
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "[nats] nats-server exited during startup:" >&2
      cat "$state/server.log" >&2
      return 1
    fi
    sleep 0.1
  done
  if [ "$i" = 100 ]; then
    echo "[nats] nats-server did not answer on 127.0.0.1:$port" >&2
    return 1
  fi

  export LS_NATS_URL="nats://127.0.0.1:$port"
  export LS_NATS_USER="$user"
  export LS_NATS_PASS="$pass"
  export LS_NATS_STATE_DIR="$state"
  {
    echo "export LS_NATS_URL=$LS_NATS_URL"
    echo "export LS_NATS_USER=$LS_NATS_USER"
    echo "export LS_NATS_PASS=$LS_NATS_PASS"
    echo "export LS_NATS_STATE_DIR=$LS_NATS_STATE_DIR"
  } >"$state/env"
  echo "[nats] nats-server listening on $LS_NATS_URL (pid $(cat "$state/pid"), store $state/js)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ls_nats_start
  cat "${LS_NATS_STATE_DIR:-${TMPDIR:-/tmp}/ls-nats-test}/env"
else
  ls_nats_start
fi
