#!/usr/bin/env bash
# Create one virtual environment per Python peer under benchmarks/.envs/ (ignored by git), with
# the versions the benchmark tables report. None of them is a dependency of mixedmodels.
#
#     bash benchmarks/peers/setup.sh            # all peers
#     bash benchmarks/peers/setup.sh glmm       # one
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
declare -A pins=(
  [glmm]="glmm==0.6.2"
  [mixedlm]="mixedlm==1.3.0"
  [statsmodels]="statsmodels==0.15.0"
)
peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then peers=(glmm mixedlm statsmodels); fi
for peer in "${peers[@]}"; do
  env="$here/.envs/$peer"
  echo "== $peer -> $env"
  "$python" -m venv "$env"
  "$env/bin/pip" install --quiet --upgrade pip
  "$env/bin/pip" install --quiet "${pins[$peer]}" pandas
done
