#!/bin/bash
# Fit on one machine with MPI (pip install -e ".[mpi]" provides mpiexec).
#   bash jobs/fit_mpirun.sh [RANKS] [CONFIG]
# Rerun the same command after an interruption to resume.
set -euo pipefail
RANKS=${1:-$(nproc)}
CONFIG=${2:-jobs/fit.toml}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
mpiexec -n "$RANKS" python -m sedhpc fit --config "$CONFIG"
