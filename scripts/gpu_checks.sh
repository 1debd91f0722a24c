#!/usr/bin/env bash
# GPU tests and benchmarks, for a CUDA machine (CI has no GPU, so these are run by hand).
#
#   bash scripts/gpu_checks.sh OUTDIR [tests] [render] [network] [voxelize] [vs_splatfacto]
#   (default: the first four; vs_splatfacto runs python -m benchmarks.vs_splatfacto --quick, a few minutes)
#
# Logs go to OUTDIR; benchmark JSON to benchmarks/results/ (copied to OUTDIR too). Wheels for packages
# missing on the machine (gsplat, open_clip, ...) may be put in .whl/ and are installed first.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=$(realpath -m "${1:-gpu_out}"); shift || true
STAGES=${*:-tests render network voxelize}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
if compgen -G ".whl/*.whl" >/dev/null; then
  # offline machine: the wheels of scripts/gpu_wheels.txt, this package, placeholders for unused optional imports
  source scripts/setup_offline_gpu.sh > "$OUTDIR/setup.log" 2>&1 || { cat "$OUTDIR/setup.log"; exit 1; }
  export PYTHONPATH=$PYTHONPATH:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUTDIR/gpu.txt"

# gsplat compiles its CUDA code on first use (minutes): do it once, timed.
t0=$(date +%s)
python3 -c "
import torch, gsplat
from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.core.cameras import Cameras
from ff3r_ns.core.render import render
g = Gaussians.random(100, feature_dim=4, device='cuda')
k = torch.tensor([[[50., 0, 32], [0, 50., 32], [0, 0, 1]]], device='cuda')
print('gsplat', gsplat.__version__, render(g, Cameras(torch.eye(4, device='cuda')[None], k, 64, 64)).rgb.shape)
" 2>&1 | tail -3 | tee "$OUTDIR/compile.log"
echo "gsplat ready after $(( $(date +%s) - t0 )) s" | tee -a "$OUTDIR/compile.log"

for stage in $STAGES; do
  t0=$(date +%s)
  case $stage in
    tests) python3 -m pytest -q -s -m gpu -p no:cacheprovider tests/ > "$OUTDIR/gpu_tests.log" 2>&1 ;;   # every gpu-marked test
    render) python3 -m benchmarks.render --backends gsplat > "$OUTDIR/bench_render.log" 2>&1 ;;
    network) python3 -m benchmarks.network > "$OUTDIR/bench_network.log" 2>&1 ;;
    voxelize) python3 -m benchmarks.voxelize > "$OUTDIR/bench_voxelize.log" 2>&1 ;;
    vs_splatfacto) python3 -m benchmarks.vs_splatfacto --quick > "$OUTDIR/bench_vs_splatfacto.log" 2>&1 ;;
    *) echo "unknown stage $stage"; continue ;;
  esac
  echo "stage $stage: exit $? after $(( $(date +%s) - t0 )) s" | tee -a "$OUTDIR/stages.txt"
done
cp benchmarks/results/*.json "$OUTDIR/" 2>/dev/null || true
