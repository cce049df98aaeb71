#!/usr/bin/env bash
# Stops the Azurite started by tests/abs/start.sh and removes its data.
set -uo pipefail
# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"
state="$(ls_state_dir LS_ABS_STATE_DIR ls-abs-test)"
ls_stop_pid "$state/pid"
rm -rf "$state"
