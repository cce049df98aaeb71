#!/usr/bin/env bash
# Stops the fake-gcs-server started by tests/gcs/start.sh and removes its state.
set -uo pipefail
# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"
state="$(ls_state_dir LS_GCS_STATE_DIR ls-gcs-test)"
ls_stop_pid "$state/pid"
rm -rf "$state"
