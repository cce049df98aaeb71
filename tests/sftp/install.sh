#!/usr/bin/env bash
# Installs the SFTP test server (Debian's openssh-server) for tests/sftp/start.sh. Idempotent.
# The system sshd service is not started or enabled: start.sh runs a private sshd.
set -euo pipefail
if [ ! -x /usr/sbin/sshd ]; then
  echo "[sftp] installing openssh-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  # policy-rc.d 101: the package's postinst must not start a system sshd on port 22.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee /usr/sbin/policy-rc.d >/dev/null
    $sudo_cmd chmod +x /usr/sbin/policy-rc.d
    remove_policy=1
  fi
  $sudo_cmd apt-get update -qq || true
  $sudo_cmd apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
  if [ "${remove_policy:-0}" = 1 ]; then
    $sudo_cmd rm -f /usr/sbin/policy-rc.d
  fi
fi
# A login for the password-authentication tests: no shell, no password until start.sh sets a
# random one for its private sshd (and stop.sh locks it again).
if [ "$(id -u)" = 0 ] && ! id ls-sftp-test >/dev/null 2>&1; then
  echo "[sftp] adding user ls-sftp-test (password tests)" >&2
  useradd --create-home --shell /usr/sbin/nologin ls-sftp-test
  passwd -l ls-sftp-test >/dev/null
fi
for tool in ssh-keygen python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "[sftp] $tool missing" >&2; exit 1; }
done
/usr/sbin/sshd -V 2>&1 | head -n 1 >&2 || true
