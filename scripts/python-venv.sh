#!/usr/bin/env bash
# Creates .venv-tuf at the repository root with python-tuf 7 and securesystemslib (with crypto),
# used by ota-core's TUF interoperability test. Idempotent and quiet when the venv is ready.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-tuf"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import tuf.api.metadata, securesystemslib, cryptography' 2>/dev/null; then
    exit 0
fi
echo "creating $venv (python-tuf 7, securesystemslib[crypto])" >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'tuf>=7,<8' 'securesystemslib[crypto]'
