#!/usr/bin/env bash
# Stops the s3s-fs started by tests/s3/start.sh and removes its data.
set -uo pipefail
# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"
state="$(ls_state_dir LS_S3_STATE_DIR ls-s3-test)"
ls_stop_pid "$state/pid"
rm -rf "$state"
