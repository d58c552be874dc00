#!/usr/bin/env bash
# Write constraints.txt (the lock) from a virtual environment whose test suite passed.
#   bash scripts/lock.sh .venv-latest     (what `make lock` runs after `make test-latest`)
# torch is left out: the Makefile pins it through TORCH_SPEC, and a GPU box keeps its own
# CUDA build of the same version (a +cpu / +cu12x local tag would conflict there).
set -euo pipefail
venv="${1:?usage: scripts/lock.sh VENV}"
out="${2:-constraints.txt}"
py="$venv/bin/python"
[ -x "$py" ] || { echo "lock: $py not found (run make test-latest first)" >&2; exit 2; }
transformers=$("$py" -c "import transformers; print(transformers.__version__)")
{
  echo "# The lock: exact versions the test suite passed on. make run / make test / CI install"
  echo "# with pip's -c (constraints), so a fresh machine gets what was tested, any day."
  echo "# Refresh: make test-latest && make lock   (docs/installs.md). Do not edit by hand."
  echo "# Written $(date -u +%Y-%m-%d) from $venv (python $("$py" -c 'import platform; print(platform.python_version())'), transformers $transformers)."
  "$py" -m pip freeze --exclude-editable --disable-pip-version-check 2>/dev/null \
    | grep -v -i -E '^(torch|mudman)==' | LC_ALL=C sort -f
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "lock: wrote $out ($(grep -c -v '^#' "$out") packages)"
