#!/usr/bin/env bash
# One ResNet-20 training step (batch 128): 2 MPI ranks x 1 thread, 1 rank x 2 threads, and PyTorch with
# 2 threads (when python3-torch is installed), run in interleaved rounds so that a loaded machine
# slows them alike. Usage: bench/data_parallel_compare.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
build="${1:-build}"
rounds="${2:-3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
step="$build/bench/resblocks_data_parallel_step"
[ -x "$step" ] || { echo "no $step: build the target resblocks_data_parallel_step (needs MPI)" >&2; exit 1; }
mpirun=(mpirun)
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  mpirun+=(--oversubscribe)
  [ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMP_NUM_THREADS=1
python=""  # a Python that has torch (Debian's python3-torch is for /usr/bin/python3)
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c "import torch" 2>/dev/null; then python="$p"; break; fi
done
[ -n "$python" ] || echo "(no Python with torch: PyTorch left out)"
for r in $(seq "$rounds"); do
  echo "== round $r"
  "${mpirun[@]}" -np 2 -x OMP_NUM_THREADS=1 "$step" --threads 1
  OMP_NUM_THREADS=2 "${mpirun[@]}" -np 1 -x OMP_NUM_THREADS=2 "$step" --threads 2
  if [ -n "$python" ]; then
    OMP_NUM_THREADS=2 OPENBLAS_CORETYPE=SkylakeX "$python" "$here/cifar_resnet_torch.py" 2
  fi
done
