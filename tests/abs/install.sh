#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator, npm `azurite`) for the abs backend tests.
# Idempotent: nothing happens when azurite-blob is already on PATH.
set -euo pipefail
if command -v azurite-blob >/dev/null 2>&1; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq nodejs npm
fi
npm install -g --silent azurite@3.37.0
command -v azurite-blob >/dev/null
