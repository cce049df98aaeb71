#!/usr/bin/env bash
# Stops the rclone WebDAV server started by tests/webdav/start.sh and removes its data.
set -uo pipefail
# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"
state="$(ls_state_dir LS_WEBDAV_STATE_DIR ls-webdav-test)"
ls_stop_pid "$state/pid"
rm -rf "$state"
