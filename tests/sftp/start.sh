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

# shellcheck source=../lib/server.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib/server.sh"

ls_sftp_start() {
  local state
  state="$(ls_state_dir LS_SFTP_STATE_DIR ls-sftp-test)"
  local sshd=/usr/sbin/sshd
  if [ ! -x "$sshd" ]; then
    bash "$(dirname "${BASH_SOURCE[0]}")/install.sh" || return 1
  fi
  ls_reset_state "$state" "$state/sshd.pid"
  mkdir -p "$state/root"
  chmod 700 "$state"
  # The privilege separation directory sshd insists on.
  [ -d /run/sshd ] || mkdir -p /run/sshd 2>/dev/null || sudo mkdir -p /run/sshd || return 1

  ssh-keygen -q -t ed25519 -N '' -C ls-sftp-host -f "$state/host_ed25519" || return 1
  ssh-keygen -q -t ed25519 -N '' -C ls-sftp-client -f "$state/client_ed25519" || return 1
  cp "$state/client_ed25519.pub" "$state/authorized_keys"
  chmod 600 "$state/authorized_keys"

  local port
  port="$(ls_free_port)" || return 1
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

  ls_launch "$state/sshd.pid" "$state/sshd.log" "$sshd" -D -e -f "$state/sshd_config"
  ls_wait_ready sftp sshd "$port" "$state/sshd.pid" "$state/sshd.log" 100 || return 1

  export LS_SFTP_HOST="127.0.0.1:$port"
  export LS_SFTP_USER="$(id -un)"
  export LS_SFTP_KEY="$state/client_ed25519"
  LS_SFTP_HOST_KEY="$(cat "$state/host_ed25519.pub")"
  export LS_SFTP_HOST_KEY
  export LS_SFTP_ROOT="$state/root"
  export LS_SFTP_SSHD_CONFIG="$state/sshd_config"
  local vars=(LS_SFTP_HOST LS_SFTP_USER LS_SFTP_KEY LS_SFTP_HOST_KEY LS_SFTP_ROOT
    LS_SFTP_SSHD_CONFIG)
  if [ -n "$pw" ]; then
    export LS_SFTP_PW_USER="$pw_user" LS_SFTP_PASSWORD="$pw"
    LS_SFTP_PW_HOME="$(getent passwd "$pw_user" | cut -d: -f6)"
    export LS_SFTP_PW_HOME
    vars+=(LS_SFTP_PW_USER LS_SFTP_PASSWORD LS_SFTP_PW_HOME)
  fi
  # LS_SFTP_HOST_KEY ("ssh-ed25519 AAAA... ls-sftp-host") is written in single quotes.
  ls_write_env "$state" "${vars[@]}"
  echo "[sftp] sshd listening on $LS_SFTP_HOST (pid $(cat "$state/sshd.pid"), root $LS_SFTP_ROOT)" >&2
}

ls_start_main ls_sftp_start "$(ls_state_dir LS_SFTP_STATE_DIR ls-sftp-test)"
