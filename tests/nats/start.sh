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

# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"

# ls_nats_ready LOG PORT: whether nats-server has logged that it is ready and takes connections.
ls_nats_ready() {
  grep -q "Server is ready" "$1" && ls_tcp_open "$2"
}

ls_nats_start() {
  local state
  state="$(ls_state_dir LS_NATS_STATE_DIR ls-nats-test)"
  if ! command -v nats-server >/dev/null 2>&1; then
    bash "$(dirname "${BASH_SOURCE[0]}")/install.sh" || return 1
  fi
  ls_reset_state "$state" "$state/pid"
  mkdir -p "$state/js"

  local port
  port="${LS_NATS_PORT:-$(ls_free_port)}" || return 1
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

  ls_launch "$state/pid" "$state/server.log" bash "$state/cmd"
  ls_wait_ready nats nats-server "$port" "$state/pid" "$state/server.log" 100 \
    ls_nats_ready "$state/server.log" "$port" || return 1

  export LS_NATS_URL="nats://127.0.0.1:$port"
  export LS_NATS_USER="$user"
  export LS_NATS_PASS="$pass"
  export LS_NATS_STATE_DIR="$state"
  ls_write_env "$state" LS_NATS_URL LS_NATS_USER LS_NATS_PASS LS_NATS_STATE_DIR
  echo "[nats] nats-server listening on $LS_NATS_URL (pid $(cat "$state/pid"), store $state/js)" >&2
}

ls_start_main ls_nats_start "$(ls_state_dir LS_NATS_STATE_DIR ls-nats-test)"
