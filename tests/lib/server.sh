# shellcheck shell=bash
# Shared pieces of the test-server scripts tests/<backend>/start.sh and stop.sh: where a server
# keeps its state, launching it, waiting until it answers, writing its variables to
# $state/env, stopping it. Each script sources this file with
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"
#
# The start scripts are themselves sourced (tests/run-all.sh does, under `set -euo pipefail`), so
# everything here only defines ls_* functions: nothing runs, no variable or shell option is set
# in the caller, and no function calls `exit` (a failure is a non-zero return, which a caller
# with `set -e` stops on as it did before). ls_start_main is the one exception: it sets
# `set -euo pipefail`, but only when the script is run with bash, not when it is sourced.

# ls_state_dir VAR NAME: prints the state directory of a server: $VAR when it is set and not
# empty (LS_S3_STATE_DIR, ...), else ${TMPDIR:-/tmp}/NAME.
ls_state_dir() {
  local dir="${!1:-}"
  printf '%s\n' "${dir:-${TMPDIR:-/tmp}/$2}"
}

# ls_reset_state STATE PIDFILE: stops the server a previous start left running (its pid in
# PIDFILE, inside STATE), without waiting for more than 0.2 s, then removes STATE and creates it
# again, empty.
ls_reset_state() {
  local state=$1 pidfile=$2
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
    sleep 0.2
  fi
  rm -rf "$state"
  mkdir -p "$state"
}

# ls_free_port: prints a TCP port on 127.0.0.1 that is free now.
ls_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ls_launch PIDFILE LOGFILE COMMAND...: starts COMMAND in the background, its output in LOGFILE,
# no standard input, and writes its pid to PIDFILE.
ls_launch() {
  local pidfile=$1 log=$2
  shift 2
  # setsid: the server must not share the caller's process group, so a Ctrl-C in the
  # foreground job does not kill it before stop.sh runs.
  setsid "$@" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# ls_tcp_open PORT: whether something accepts a TCP connection on 127.0.0.1:PORT.
ls_tcp_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ls_wait_ready TAG NAME PORT PIDFILE LOGFILE TRIES [PROBE...]: waits until PROBE succeeds (its
# stderr discarded; default `ls_tcp_open PORT`), trying TRIES times 0.1 s apart. Returns 1, with
# "[TAG] NAME ..." on stderr, when the server (pid in PIDFILE) exits first, printing its LOGFILE,
# or when it still does not answer after the last try.
ls_wait_ready() {
  local tag=$1 name=$2 port=$3 pidfile=$4 log=$5 tries=$6 _
  shift 6
  [ $# -gt 0 ] || set -- ls_tcp_open "$port"
  for _ in $(seq 1 "$tries"); do
    if "$@" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "[$tag] $name exited during startup:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "[$tag] $name did not answer on 127.0.0.1:$port" >&2
  return 1
}

# ls_write_env STATE VAR...: writes `export VAR=value` for each VAR (set by the caller, in this
# order) to STATE/env, for `bash start.sh` to print and for later shells to source. A value with
# white space in it is written in single quotes.
ls_write_env() {
  local state=$1 name value
  shift
  for name in "$@"; do
    value="${!name}"
    case $value in
    *[[:space:]]*) echo "export $name='$value'" ;;
    *) echo "export $name=$value" ;;
    esac
  done >"$state/env"
}

# ls_start_main START_FUNCTION STATE: the last line of every start.sh. Sourced, the script just
# runs START_FUNCTION (its status is the script's); run with bash, it runs it under
# `set -euo pipefail` and then prints STATE/env, the `export` lines.
ls_start_main() {
  # BASH_SOURCE[1] is the start.sh this is called from; $0 is that script only when it was run
  # rather than sourced.
  if [ "${BASH_SOURCE[1]}" = "$0" ]; then
    set -euo pipefail
    "$1"
    cat "$2/env"
  else
    "$1"
  fi
}

# ls_stop_pid PIDFILE [PID...]: stops the server whose pid is in PIDFILE, if it is running: sends
# it SIGTERM, then the other PIDs given (best effort), and waits up to 5 s for the server to exit.
ls_stop_pid() {
  local pidfile=$1 pid other _
  shift
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid"
  for other in "$@"; do kill "$other" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
}
