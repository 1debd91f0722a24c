#!/usr/bin/env bash
# Sets up ff3r-ns on a GPU machine without network access, from wheels in .whl/ (gsplat, nerfstudio, tyro,
# viser, open_clip, ... downloaded elsewhere with `pip download --no-deps`), next to a preinstalled torch.
# Installs into /tmp/site (console scripts in /tmp/site/bin). Source it:  source scripts/setup_offline_gpu.sh
SITE=${FF3R_SITE:-/tmp/site}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || return 1
# --upgrade: the wheels above already made $SITE/bin, which pip would otherwise leave without our scripts
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$SITE" . || return 1
command -v ff3r-make-scene >/dev/null || [ -x "$SITE/bin/ff3r-make-scene" ] || { echo "console scripts missing in $SITE/bin"; return 1; }
ln -sf "$(command -v python3)" "$SITE/bin/python"
export PYTHONPATH="$SITE" FF3R_BIN="$SITE/bin" PATH="$SITE/bin:$PATH"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
python3 -c "import ff3r_ns.training.cli, gsplat; from ff3r_ns.nerfstudio.scene import load_scene; print('ff3r-ns ready, gsplat', gsplat.__version__)"
