#!/usr/bin/env bash
# Creates (idempotently) the Python environment the Flower half of the benchmark runs in,
# and prints its python's path on stdout.
#
# Flower is installed for the benchmark only: in its own virtual environment in the
# per-user cache, keyed by the Flower version, never in the project's `.venv`. torch is
# pinned to the engine's libtorch version (scripts/requirements.txt) so that both systems
# run the same kernels; pip's cache makes that reinstall quick.
#
# Environment: FEDENGINE_CACHE overrides the cache directory
# (default: ${XDG_CACHE_HOME:-$HOME/.cache}/fedengine); PYTHON the interpreter (python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${FEDENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fedengine}"
python="${PYTHON:-python3}"

flwr_version="1.42.0"
reqs="$root/scripts/requirements.txt"
# The engine's pins, so that both sides use the same torch, numpy, pillow and safetensors.
pin() { grep -E "^$1==" "$reqs" || { echo "setup.sh: $1 is not pinned in $reqs" >&2; exit 1; }; }
wanted=("flwr==$flwr_version" "$(pin torch)" "$(pin numpy)" "$(pin pillow)" "$(pin safetensors)")

venv="$cache/venv-flower-$flwr_version"
log() { printf 'flower setup: %s\n' "$*" >&2; }

command -v "$python" >/dev/null || { log "error: $python not found"; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/flower-setup.lock"
flock 9
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating $venv"
    "$python" -m venv "$venv"
fi
# Reinstall only when the wanted set changed; the stamp is written after pip succeeded.
stamp="$venv/.benchmark-requirements"
if [[ "$(cat "$stamp" 2>/dev/null)" != "${wanted[*]}" ]]; then
    log "installing ${wanted[*]}"
    "$venv/bin/python" -m pip install --quiet --progress-bar off "${wanted[@]}" >&2
    printf '%s' "${wanted[*]}" >"$stamp"
fi
echo "$venv/bin/python"
