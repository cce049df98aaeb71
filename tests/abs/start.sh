#!/usr/bin/env bash
# Starts Azurite's blob service (which checks Shared Key signatures) on 127.0.0.1 for the abs
# backend tests and creates their container. Meant to be sourced (tests/run-all.sh does) so
# the LS_ABS_* variables reach cargo test; running it with bash prints them as `export` lines.
#
#   source tests/abs/start.sh   # exports LS_ABS_ENDPOINT, LS_ABS_ACCOUNT, LS_ABS_KEY, LS_ABS_CONTAINER
#   bash tests/abs/stop.sh
#
# Installs Azurite with tests/abs/install.sh when azurite-blob is not on PATH.

# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"

ls_abs_start() {
  local state
  state="$(ls_state_dir LS_ABS_STATE_DIR ls-abs-test)"
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  if ! command -v azurite-blob >/dev/null 2>&1; then
    echo "[abs] installing azurite" >&2
    bash "$here/install.sh" || return 1
  fi
  ls_reset_state "$state" "$state/pid"
  mkdir -p "$state/data"

  local port
  port="$(ls_free_port)" || return 1
  # Azurite's well-known development account and key.
  local account="devstoreaccount1" container="ls-test"
  local key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

  ls_launch "$state/pid" "$state/server.log" \
    azurite-blob --blobHost 127.0.0.1 --blobPort "$port" --location "$state/data" \
    --disableTelemetry --skipApiVersionCheck --loose
  ls_wait_ready abs azurite "$port" "$state/pid" "$state/server.log" 200 || return 1

  local endpoint="http://127.0.0.1:$port/$account"
  # Create Container, signed with the account key (Shared Key), from python's standard library.
  python3 - "$endpoint" "$account" "$key" "$container" <<'PY' || { echo "[abs] cannot create container" >&2; return 1; }
import base64, hashlib, hmac, sys, urllib.request, urllib.parse, email.utils
endpoint, account, key, container = sys.argv[1:5]
url = f"{endpoint}/{container}?restype=container"
date = email.utils.formatdate(usegmt=True)
headers = {"x-ms-date": date, "x-ms-version": "2021-12-02"}
path = urllib.parse.urlparse(url).path
canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
sts = "PUT\n" + "\n" * 11 + canon_headers + f"/{account}{path}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(url, method="PUT", headers={**headers, "Authorization": f"SharedKey {account}:{sig}", "Content-Length": "0"})
try:
    urllib.request.urlopen(req).read()
except urllib.error.HTTPError as e:
    if e.code != 409:  # ContainerAlreadyExists
        raise
PY

  export LS_ABS_ENDPOINT="$endpoint"
  export LS_ABS_ACCOUNT="$account"
  export LS_ABS_KEY="$key"
  export LS_ABS_CONTAINER="$container"
  export LS_ABS_STATE_DIR="$state"
  ls_write_env "$state" LS_ABS_ENDPOINT LS_ABS_ACCOUNT LS_ABS_KEY LS_ABS_CONTAINER \
    LS_ABS_STATE_DIR
  echo "[abs] azurite listening on $LS_ABS_ENDPOINT (pid $(cat "$state/pid"), data $state/data)" >&2
}

ls_start_main ls_abs_start "$(ls_state_dir LS_ABS_STATE_DIR ls-abs-test)"
