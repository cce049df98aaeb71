#!/usr/bin/env bash
# Stops the nats-server started by tests/nats/start.sh and removes its JetStream store.
set -uo pipefail
# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"
state="$(ls_state_dir LS_NATS_STATE_DIR ls-nats-test)"
ls_stop_pid "$state/pid"
rm -rf "$state"
