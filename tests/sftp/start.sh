#!/usr/bin/env bash
# Starts a private OpenSSH sshd (internal-sftp) on 127.0.0.1 for the SFTP backend tests, as the
# current user, with its own host key and a client key that is the only way in. Meant to be
# sourced (tests/run-all.sh does) so the LS_SFTP_* variables reach cargo test; running it with
# bash prints them as `export` lines instead.
#
#   source tests/sftp/start.sh   # exports LS_SFTP_HOST, LS_SFTP_USER, LS_SFTP_KEY,
#                                # LS_SFTP_HOST_KEY, LS_SFTP_ROOT, LS_SFTP_SSHD_CONFIG, and
#                                # as root LS_SFTP_PW_USER, LS_SFTP_PASSWORD, LS_SFTP_PW_HOME
#   bash tests/sftp/stop.sh
#
# tests/sftp/install.sh installs openssh-server when /usr/sbin/sshd is missing.

ls_sftp_start() {
  local state="${LS_SFTP_STATE_DIR:-${TMPDIR:-/tmp}/ls-sftp-test}"
  local sshd=/usr/sbin/sshd
  if [ ! -x "$sshd" ]; then
    bash "$(dirname "${BASH_SOURCE[0]}")/install.sh" || return 1
  fi
  if [ -f "$state/sshd.pid" ] && kill -0 "$(cat "$state/sshd.pid")" 2>/dev/null; then
    kill "$(cat "$state/sshd.pid")" 2>/dev/null || true
    sleep 0.2
  fi
  rm -rf "$state"
  mkdir -p "$state/root"
  chmod 700 "$state"
  # The privilege separation directory sshd insists on.
  [ -d /run/sshd ] || mkdir -p /run/sshd 2>/dev/null || sudo mkdir -p /run/sshd || return 1

  ssh-keygen -q -t ed25519 -N '' -C ls-sftp-host -f "$state/host_ed25519" || return 1
  ssh-keygen -q -t ed25519 -N '' -C ls-sftp-client -f "$state/client_ed25519" || return 1
  cp "$state/client_ed25519.pub" "$state/authorized_keys"
  chmod 600 "$state/authorized_keys"

  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" || return 1
  cat >"$state/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $state/host_ed25519
PidFile $state/sshd.pid
AuthorizedKeysFile $state/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
MaxStartups 100:30:200
MaxSessions 100
ClientAliveInterval 0
CONF
  # Password logins for ls-sftp-test only (tests/sftp/install.sh adds it when run as root),
  # with a random password; it gets SFTP and nothing else. Servers started side by side (one
  # per state directory) share the one password, kept root-only under /run, and each holds a
  # reference there: stop.sh locks the login again when the last one stops.
  local pw_user=ls-sftp-test pw="" shared=/run/ls-sftp-test
  if [ "$(id -u)" = 0 ] && id "$pw_user" >/dev/null 2>&1; then
    mkdir -p -m 0700 "$shared/refs" || return 1
    if [ -s "$shared/password" ]; then
      pw="$(cat "$shared/password")"
    else
      pw="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')" || return 1
      (umask 077 && printf '%s\n' "$pw" >"$shared/password") || return 1
    fi
    touch "$shared/refs/$(printf '%s' "$state" | md5sum | cut -c1-16)"
    echo "$pw_user:$pw" | chpasswd || return 1
    usermod -U "$pw_user" 2>/dev/null || true
    cat >>"$state/sshd_config" <<CONF
Match User $pw_user
  PasswordAuthentication yes
  ForceCommand internal-sftp
CONF
  fi

  # setsid: the server must not share the caller's process group, so a Ctrl-C in the
  # foreground job does not kill it before stop.sh runs.
  setsid "$sshd" -D -e -f "$state/sshd_config" >"$state/sshd.log" 2>&1 </dev/null &
  echo $! >"$state/sshd.pid"

  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      break
    fi
    if ! kill -0 "$(cat "$state/sshd.pid")" 2>/dev/null; then
      echo "[sftp] sshd exited during startup:" >&2
      cat "$state/sshd.log" >&2
      return 1
    fi
    sleep 0.1
  done
  if [ "$i" = 100 ]; then
    echo "[sftp] sshd did not answer on 127.0.0.1:$port" >&2
    return 1
  fi

  export LS_SFTP_HOST="127.0.0.1:$port"
  export LS_SFTP_USER="$(id -un)"
  export LS_SFTP_KEY="$state/client_ed25519"
  LS_SFTP_HOST_KEY="$(cat "$state/host_ed25519.pub")"
  export LS_SFTP_HOST_KEY
  export LS_SFTP_ROOT="$state/root"
  export LS_SFTP_SSHD_CONFIG="$state/sshd_config"
  if [ -n "$pw" ]; then
    export LS_SFTP_PW_USER="$pw_user" LS_SFTP_PASSWORD="$pw"
    LS_SFTP_PW_HOME="$(getent passwd "$pw_user" | cut -d: -f6)"
    export LS_SFTP_PW_HOME
  fi
  {
    echo "export LS_SFTP_HOST=$LS_SFTP_HOST"
    echo "export LS_SFTP_USER=$LS_SFTP_USER"
    echo "export LS_SFTP_KEY=$LS_SFTP_KEY"
    echo "export LS_SFTP_HOST_KEY='$LS_SFTP_HOST_KEY'"
    echo "export LS_SFTP_ROOT=$LS_SFTP_ROOT"
    echo "export LS_SFTP_SSHD_CONFIG=$LS_SFTP_SSHD_CONFIG"
    if [ -n "$pw" ]; then
      echo "export LS_SFTP_PW_USER=$LS_SFTP_PW_USER"
      echo "export LS_SFTP_PASSWORD=$LS_SFTP_PASSWORD"
      echo "export LS_SFTP_PW_HOME=$LS_SFTP_PW_HOME"
    fi
  } >"$state/env"
  echo "[sftp] sshd listening on $LS_SFTP_HOST (pid $(cat "$state/sshd.pid"), root $LS_SFTP_ROOT)" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  ls_sftp_start
  cat "${LS_SFTP_STATE_DIR:-${TMPDIR:-/tmp}/ls-sftp-test}/env"
else
  ls_sftp_start
fi
