#!/usr/bin/env bash
# Installs the WebDAV test server (Debian's rclone, `rclone serve webdav`) when it is missing.
# Idempotent; tests/install.sh runs it.
set -euo pipefail
if command -v rclone >/dev/null 2>&1; then
  exit 0
fi
echo "[webdav] installing rclone (apt)" >&2
if [ "$(id -u)" = 0 ]; then
  sudo=""
else
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q rclone >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null
  $sudo apt-get install -y -q rclone >/dev/null
}
rclone version | head -1
