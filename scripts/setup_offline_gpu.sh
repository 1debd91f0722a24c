#!/usr/bin/env bash
# Sets up ff3r-ns on a GPU machine without network access, next to a preinstalled torch (+ timm, numpy, rich,
# jaxtyping, einops), from wheels in .whl/. Make them here, where pip reaches PyPI (≈ 26 MB, Python 3.12):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl -r scripts/gpu_wheels.txt
#
# and carry .whl/ to the machine. Installs into /tmp/site (console scripts in /tmp/site/bin); nerfstudio's
# module-wide optional imports that are still missing get placeholders (scripts/offline_stubs.py, names printed).
# open3d is not carried (too large): splatfacto's initial points are read with plyfile
# (benchmarks/offline_splatfacto.py). Source it:  source scripts/setup_offline_gpu.sh
SITE=${FF3R_SITE:-/tmp/site}
STUBS=${FF3R_STUBS:-/tmp/ff3r_stubs}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || return 1
# --upgrade: the wheels above already made $SITE/bin, which pip would otherwise leave without our scripts
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$SITE" . || return 1
command -v ff3r-make-scene >/dev/null || [ -x "$SITE/bin/ff3r-make-scene" ] || { echo "console scripts missing in $SITE/bin"; return 1; }
ln -sf "$(command -v python3)" "$SITE/bin/python"
export PYTHONPATH="$SITE" FF3R_BIN="$SITE/bin" PATH="$SITE/bin:$PATH"
PYTHONPATH="$SITE" python3 -W ignore scripts/offline_stubs.py "$STUBS" || return 1
export PYTHONPATH="$SITE:$STUBS"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
# gsplat's kernels as built on this machine's image before (scripts/gpu/, 1.4 MB): saves the ~190 s first-use
# compile; when they do not load, gsplat compiles as usual. FF3R_GSPLAT_JIT=1 always compiles.
if [ -f scripts/gpu/gsplat_cuda_sm90.so.xz ] && [ -z "${FF3R_GSPLAT_JIT:-}" ]; then
  xz -dc scripts/gpu/gsplat_cuda_sm90.so.xz > "$SITE/gsplat/gsplat_cuda_prebuilt.so" && cp scripts/gpu/gsplat_csrc.py "$SITE/gsplat/csrc.py"
fi
python3 -c "import ff3r_ns.training.train, gsplat; from ff3r_ns.nerfstudio.scene import load_scene; print('ff3r-ns ready, gsplat', gsplat.__version__)"
python3 -c "import gsplat.cuda._backend as b; print('gsplat kernels:', 'prebuilt' if b._C is not None and b._C.__name__ == 'gsplat.csrc' else 'compiled on first use')"
