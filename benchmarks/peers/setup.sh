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
  [bambi]="bambi==0.17.2 numpyro==0.22.0 jax==0.10.2 matplotlib<3.10"
)
peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then peers=(glmm mixedlm statsmodels bambi); fi
for peer in "${peers[@]}"; do
  env="$here/.envs/$peer"
  echo "== $peer -> $env"
  "$python" -m venv "$env"
  "$env/bin/pip" install --quiet --upgrade pip
  # shellcheck disable=SC2086  # a pin may list several packages
  "$env/bin/pip" install --quiet ${pins[$peer]} pandas
done
