#!/usr/bin/env bash
# Stops the sshd started by tests/sftp/start.sh (and the sessions it forked) and removes its
# state: keys, config and the replica files under LS_SFTP_ROOT.
set -uo pipefail
# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"
state="$(ls_state_dir LS_SFTP_STATE_DIR ls-sftp-test)"
# Session processes are the listener's children (they outlive it otherwise): listed before it
# is stopped, and stopped with it.
children=""
if [ -f "$state/sshd.pid" ]; then
  children="$(ps -o pid= --ppid "$(cat "$state/sshd.pid")" 2>/dev/null || true)"
fi
# shellcheck disable=SC2086 # one pid a word
ls_stop_pid "$state/sshd.pid" $children
rm -rf "$state"
# No password stays valid for the password-test login once the last test server has stopped.
shared=/run/ls-sftp-test
rm -f "$shared/refs/$(printf '%s' "$state" | md5sum | cut -c1-16)"
if [ "$(id -u)" = 0 ] && id ls-sftp-test >/dev/null 2>&1 &&
  [ -z "$(ls -A "$shared/refs" 2>/dev/null)" ]; then
  passwd -l ls-sftp-test >/dev/null 2>&1 || true
  rm -f "$shared/password"
fi
