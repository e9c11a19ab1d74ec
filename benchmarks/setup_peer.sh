#!/usr/bin/env bash
# Make (or update) the virtualenv of one benchmark peer under benchmarks/.venvs/<peer>.
#
#   benchmarks/setup_peer.sh PEER [--force]   # one peer; --force deletes and remakes its venv
#   benchmarks/setup_peer.sh all [--force]    # every peer in the table
#   benchmarks/setup_peer.sh                  # list the peers
#
# Peers live in their own venvs so that they never become loopml dependencies; the benchmarks
# call them as subprocesses of benchmarks/.venvs/<peer>/bin/python. The interpreter the venv is
# made from is $PYTHON (default: python3). benchmarks/.venvs/ is git-ignored.
set -euo pipefail

# ---- the peer table: one line per peer, "name" -> pip requirement(s), space-separated --------
declare -A PEERS=(
  [mlflow]="mlflow==3.*"
  [dvc]="dvc==3.*"
  [prefect]="prefect==3.*"
  [pandera]="pandera[pandas] pyarrow"
  [feast]="feast[duckdb]==0.67.*"
  [evidently]="evidently==0.7.23 pandas<3"
  [litellm]="litellm[proxy]==1.108.*"
  # GPTCache imports its sqlite store (SQLAlchemy) and faiss lazily, pip-installing them on
  # first use when missing; installed here instead
  [gptcache]="gptcache==0.1.44 faiss-cpu sqlalchemy"
  # llm-guard 0.3.16 hard-requires torch and transformers==4.51.3; torch pinned to the CPU wheel
  [llmguard]="torch==2.13.0 llm-guard==0.3.16"
)
# -----------------------------------------------------------------------------------------------

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS="$HERE/.venvs"
PYTHON="${PYTHON:-python3}"

usage() {
  echo "usage: $0 PEER|all [--force]" >&2
  echo "peers:" >&2
  for p in $(printf '%s\n' "${!PEERS[@]}" | sort); do
    printf '  %-10s %s\n' "$p" "${PEERS[$p]}" >&2
  done
}

setup_one() {
  local peer="$1" force="$2" venv reqs
  venv="$VENVS/$peer"
  read -r -a reqs <<<"${PEERS[$peer]}"  # no globbing: 'mlflow==3.*' stays literal
  if [[ "$force" == 1 && -d "$venv" ]]; then
    echo "==> removing $venv"
    rm -rf "$venv"
  fi
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> creating $venv with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    mkdir -p "$VENVS"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
  fi
  echo "==> installing into $peer: ${reqs[*]}"
  "$venv/bin/python" -m pip install "${reqs[@]}"
  echo "==> $peer ready: $venv/bin/python"
  # the peer's own package, its name compared without case, '-', '_' or '.' (llmguard: llm-guard)
  "$venv/bin/python" -m pip list 2>/dev/null \
    | awk -v p="$peer" '{ n = tolower($1); gsub(/[-_.]/, "", n) } n == p' || true
}

[[ $# -ge 1 ]] || { usage; exit 2; }
target="$1"
force=0
[[ "${2:-}" == "--force" ]] && force=1

if [[ "$target" == all ]]; then
  for p in $(printf '%s\n' "${!PEERS[@]}" | sort); do
    setup_one "$p" "$force"
  done
elif [[ -n "${PEERS[$target]+x}" ]]; then
  setup_one "$target" "$force"
else
  echo "unknown peer: $target" >&2
  usage
  exit 2
fi
