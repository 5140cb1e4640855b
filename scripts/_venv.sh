# Sourced by scripts/serve and scripts/test: make .venv with Python >= 3.11 and install a requirements file into it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: $python_bin is missing or older than 3.11 (set PYTHON=/path/to/python3.11+)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi

install_requirements() {
  # Reinstall only when the requirements files changed since the last install.
  local stamp=".venv/.installed-$1"
  if [ ! -f "$stamp" ] || [ -n "$(find requirements*.txt -newer "$stamp")" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$1"
    touch "$stamp"
  fi
}
