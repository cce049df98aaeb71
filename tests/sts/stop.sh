#!/usr/bin/env bash
# Stops the moto server started by tests/sts/start.sh and removes its state directory.
set -uo pipefail
# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"
state="$(ls_state_dir LS_STS_STATE_DIR ls-sts-test)"
ls_stop_pid "$state/pid"
rm -rf "$state"
