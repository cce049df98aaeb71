#!/usr/bin/env bash
# Starts moto in server mode (an in-memory fake of AWS; here for STS) on 127.0.0.1 for the tests
# of the credential providers that call STS (AssumeRoleWithWebIdentity, AssumeRole). Meant to be
# sourced (tests/run-all.sh does) so LS_STS_ENDPOINT reaches cargo test; running it with bash
# prints it as an `export` line instead.
#
#   source tests/sts/start.sh   # exports LS_STS_ENDPOINT
#   bash tests/sts/stop.sh
#
# moto routes an unsigned AssumeRoleWithWebIdentity to STS by its Action; other calls need a
# SigV4 Authorization header whose scope names sts (any keys). It accepts any token and role.
# POST $LS_STS_ENDPOINT/moto-api/seed?a=N makes the access key ids and secret keys that follow
# repeat; session tokens are random whatever the seed. POST .../moto-api/reset forgets every
# credential handed out. Installs moto[server] 5.2.6 with pip when it is missing.

# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"

# ls_sts_answers PORT: whether moto on 127.0.0.1:PORT hands out credentials for an
# AssumeRoleWithWebIdentity.
ls_sts_answers() {
  python3 - "$1" <<'PY'
import sys, urllib.parse, urllib.request
body = urllib.parse.urlencode({
    "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
    "RoleArn": "arn:aws:iam::123456789012:role/ls-probe", "RoleSessionName": "ls-probe",
    "WebIdentityToken": "ls-probe",
}).encode()
answer = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", body, timeout=2).read()
assert b"<AccessKeyId>" in answer, answer
PY
}

ls_sts_start() {
  local state
  state="$(ls_state_dir LS_STS_STATE_DIR ls-sts-test)"
  if ! python3 -c 'import importlib.metadata as m, flask_cors, sys; sys.exit(m.version("moto") != "5.2.6")' \
    >/dev/null 2>&1; then
    echo "[sts] installing moto[server] 5.2.6" >&2
    pip install --quiet 'moto[server]==5.2.6' || return 1
  fi
  ls_reset_state "$state" "$state/pid"

  local port
  port="$(ls_free_port)" || return 1

  ls_launch "$state/pid" "$state/server.log" python3 -m moto.server -H 127.0.0.1 -p "$port"
  ls_wait_ready sts moto "$port" "$state/pid" "$state/server.log" 300 \
    ls_sts_answers "$port" || return 1
  # The probe's credentials are forgotten: the tests start from an empty server.
  python3 - "$port" <<'PY' || { echo "[sts] moto did not reset" >&2; return 1; }
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/reset", b"", timeout=5).read()
PY

  export LS_STS_ENDPOINT="http://127.0.0.1:$port"
  ls_write_env "$state" LS_STS_ENDPOINT
  echo "[sts] moto listening on $LS_STS_ENDPOINT (pid $(cat "$state/pid"))" >&2
}

ls_start_main ls_sts_start "$(ls_state_dir LS_STS_STATE_DIR ls-sts-test)"
