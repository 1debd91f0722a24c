#!/usr/bin/env bash
# Reproduces the shipped ff3r-tiny network, ff3r_ns/weights/ff3r_tiny.pt, on one GPU (~15 min on one H100,
# plus ~200 s for gsplat's first-use CUDA compile).
#
#   1. generate N_SCENES training scenes with scripts/make_training_scenes.py, seeds 1000.. (evaluation uses seeds < 1000,
#      which training never sees);
#   2. stage 1, ff3r-pretrain-geometry: supervised geometry pretraining on their ground-truth cameras and depth
#      (the stand-in for VGGT's pretraining);
#   3. stage 2, ff3r-train: annotation-free training (photometric + feature rendering + geometry-guided
#      feature warping + photometric reprojection, at the network's own predicted cameras), initialised from
#      stage 1 with its geometry modules frozen;
#   4. copy the result to ff3r_ns/weights/ff3r_tiny.pt.
#
# Every step is seeded. The defaults below are the first shipped model's recipe (one GPU, ~15 min; its camera
# head collapsed to a constant pose). The current ff3r_tiny.pt came from three runs, stage 1a, 1b and 2, listed in
# the README ("The shipped model"). This script runs them with
#   N_SCENES=128 GEO_DEVICE=cpu IMAGE_SIZE=84 GEO_MAX_VIEWS=2 GEO_MAX_STRIDE=1 GEO_LR=3e-4 GEO_BATCH=4 GEO_LAYER_SCALE=1.0 ...
#   then GEO_INIT=<1a> GEO_NPROC=7 N_SCENES=1536 ... and STAGES="feature ship" with MAX_VIEWS=4.
# Override any size through the environment, e.g.
#   GEO_STEPS=500 FEAT_STEPS=500 N_SCENES=8 bash scripts/train_shipped_model.sh  (a quick check).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${FF3R_BIN:-}" && -x .venv/bin/python ]]; then FF3R_BIN=.venv/bin; fi   # scripts/install.sh's venv
BIN=${FF3R_BIN:-$(dirname "$(command -v python)")}   # where python, ff3r-pretrain-geometry and ff3r-train live
WORK=${WORK:-outputs/train_shipped}       # scenes, checkpoints and logs (git-ignored)
N_SCENES=${N_SCENES:-64}                  # training scenes (seeds 1000 .. 1000+N-1)
VIEWS=${VIEWS:-32}                        # views per scene
IMAGE_SIZE=${IMAGE_SIZE:-112}             # network input (ff3r-tiny's NetworkSettings.image_size)
MAX_VIEWS=${MAX_VIEWS:-8}                 # context size is drawn from 2..MAX_VIEWS
BATCH_SCENES=${BATCH_SCENES:-2}           # scenes per step of stage 2
GEO_BATCH=${GEO_BATCH:-2}                 # scenes per step of stage 1
GEO_STEPS=${GEO_STEPS:-3000}              # stage 1 steps (no rendering: the faster stage)
GEO_LR=${GEO_LR:-1e-3}                    # the shipped model's. Its camera head collapsed to a constant "identity
                                          # pose" at this rate; 3e-4 fits relative poses on a few scenes (CPU
                                          # check) but 644 steps on 128 scenes did not generalise either (README)
GEO_MAX_VIEWS=${GEO_MAX_VIEWS:-$MAX_VIEWS}  # stage 1 context sizes 2..GEO_MAX_VIEWS, frames at most GEO_MAX_STRIDE
GEO_MAX_STRIDE=${GEO_MAX_STRIDE:-2}       # apart. The shipped model: 8 and 2. Two-view contexts of neighbouring
GEO_LAYER_SCALE=${GEO_LAYER_SCALE:-}      # frames (2, 1) with GEO_LAYER_SCALE=1.0 (LayerScale init; empty = VGGT's
                                          # 0.01) are the first stage-1 setting whose poses beat the constant
                                          # baseline on unseen rooms (README, The shipped model)
GEO_INIT=${GEO_INIT:-}                    # stage 1 starts from this checkpoint (empty: from scratch)
GEO_DEVICE=${GEO_DEVICE:-${DEVICE:-cuda}}  # stage 1 device; cpu with GEO_NPROC > 1: torchrun processes (gloo), one thread each
GEO_NPROC=${GEO_NPROC:-1}
FEAT_STEPS=${FEAT_STEPS:-2000}            # stage 2 steps
FEAT_LR=${FEAT_LR:-5e-4}
GEO_LR_SCALE=${GEO_LR_SCALE:-0}           # stage 2 keeps stage 1's geometry modules frozen (fusion, Gaussian
                                          # head and decoder train): with a learning geometry, the self-rendering
                                          # losses let the views' depths drift apart (cross-view visibility -> 0)
GEO_TIME_LIMIT=${GEO_TIME_LIMIT:-330}     # safety nets (s, after each stage's first step): a stage stops and
FEAT_TIME_LIMIT=${FEAT_TIME_LIMIT:-420}   # saves when out of time; size the steps from the printed steps/s
SEED=${SEED:-0}
JOBS=${JOBS:-$(nproc)}                    # parallel scene generation
DEVICE=${DEVICE:-cuda}                    # cpu only for a smoke test of this script
OUT=${OUT:-ff3r_ns/weights/ff3r_tiny.pt}
STAGES=${STAGES:-"scenes geometry feature ship"}   # run a subset, e.g. STAGES=geometry (time-limited machines)
EXTRA_FEAT_ARGS=${EXTRA_FEAT_ARGS:-}      # extra ff3r-train flags (ablation variants: --no-fusion, --no-warping)
FEAT_OUT=${FEAT_OUT:-$WORK/ff3r_tiny.pt}  # stage 2 checkpoint
has() { [[ " $STAGES " == *" $1 "* ]]; }

SCENES="$WORK/scenes"
mkdir -p "$SCENES" "$WORK"
t_all=$(date +%s)
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

# ---------------------------------------------------------------------------- 1. scenes
if has scenes; then
t0=$(date +%s)
stamp "generating $N_SCENES scenes ($VIEWS views) in $SCENES with $JOBS jobs"
"$BIN/python" scripts/make_training_scenes.py "$SCENES" --count "$N_SCENES" --views "$VIEWS" --jobs "$JOBS"   # resumable
stamp "scenes done in $(( $(date +%s) - t0 )) s"
fi

# ---------------------------------------------------------------------------- 2. geometry pretraining (supervised)
if has geometry; then
t0=$(date +%s)
stamp "stage 1: ff3r-pretrain-geometry, $GEO_STEPS steps"
GEO_CMD=("$BIN/ff3r-pretrain-geometry")
if (( GEO_NPROC > 1 )); then GEO_CMD=(env OMP_NUM_THREADS=1 "$BIN/python" -m torch.distributed.run --nnodes 1 --nproc_per_node "$GEO_NPROC" "$BIN/ff3r-pretrain-geometry"); fi
"${GEO_CMD[@]}" --scenes "$SCENES" --out "$WORK/geometry.pt" --preset tiny --image-size "$IMAGE_SIZE" \
    --steps "$GEO_STEPS" --lr "$GEO_LR" --warmup-steps 200 --max-views "$GEO_MAX_VIEWS" --max-stride "$GEO_MAX_STRIDE" \
    --batch-scenes "$GEO_BATCH" ${GEO_LAYER_SCALE:+--layer-scale-init "$GEO_LAYER_SCALE"} ${GEO_INIT:+--init "$GEO_INIT"} \
    --seed "$SEED" --time-limit "$GEO_TIME_LIMIT" --save-every 500 --log-every 25 --writer tensorboard \
    --log-dir "$WORK/logs/geometry" --device "$GEO_DEVICE"
stamp "stage 1 done in $(( $(date +%s) - t0 )) s"
fi

# ---------------------------------------------------------------------------- 3. feature training (annotation-free)
if has feature; then
t0=$(date +%s)
stamp "stage 2: ff3r-train, $FEAT_STEPS steps (gsplat compiles its CUDA code on first use, ~200 s once)"
"$BIN/ff3r-train" --scenes "$SCENES" --out "$FEAT_OUT" --preset tiny --image-size "$IMAGE_SIZE" \
    --init "$WORK/geometry.pt" --steps "$FEAT_STEPS" --lr "$FEAT_LR" --geometry-lr-scale "$GEO_LR_SCALE" --warmup-steps 200 --max-views "$MAX_VIEWS" \
    --batch-scenes "$BATCH_SCENES" --seed "$SEED" --time-limit "$FEAT_TIME_LIMIT" --save-every 1000 --log-every 25 \
    --writer tensorboard --log-dir "$WORK/logs/$(basename "$FEAT_OUT" .pt)" --device "$DEVICE" $EXTRA_FEAT_ARGS
stamp "stage 2 done in $(( $(date +%s) - t0 )) s"
fi

# ---------------------------------------------------------------------------- 4. ship
has ship || { stamp "total $(( $(date +%s) - t_all )) s"; exit 0; }
mkdir -p "$(dirname "$OUT")"
cp "$FEAT_OUT" "$OUT"
"$BIN/python" - "$OUT" <<'EOF'
import sys
from ff3r_ns.core.checkpoint import load_checkpoint
c = load_checkpoint(sys.argv[1])
m = c.metadata
print(f"{sys.argv[1]}: stage {m['stage']}, step {m['step']}/{m['steps']}, image_size {c.image_size}, "
      f"teacher {c.teacher}, {sum(v.numel() for v in c.network.values()):,} numbers")
EOF
ls -la "$OUT"
stamp "total $(( $(date +%s) - t_all )) s"
