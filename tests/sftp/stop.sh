#!/usr/bin/env bash
# Stops the sshd started by tests/sftp/start.sh (and the sessions it forked) and removes its
# state: keys, config and the replica files under LS_SFTP_ROOT.
set -uo pipefail
state="${LS_SFTP_STATE_DIR:-${TMPDIR:-/tmp}/ls-sftp-test}"
if [ -f "$state/sshd.pid" ]; then
  pid="$(cat "$state/sshd.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    # Session processes are the listener's children (they outlive it otherwise).
    children="$(ps -o pid= --ppid "$pid" 2>/dev/null || true)"
    kill "$pid"
    for c in $children; do kill "$c" 2>/dev/null || true; done
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
fi
rm -rf "$state"
# No password stays valid for the password-test login once the last test server has stopped.
shared=/run/ls-sftp-test
rm -f "$shared/refs/$(printf '%s' "$state" | md5sum | cut -c1-16)"
if [ "$(id -u)" = 0 ] && id ls-sftp-test >/dev/null 2>&1 &&
  [ -z "$(ls -A "$shared/refs" 2>/dev/null)" ]; then
  passwd -l ls-sftp-test >/dev/null 2>&1 || true
  rm -f "$shared/password"
fi
