"""``gsplat.csrc`` from a library built earlier (installed by ``scripts/setup_offline_gpu.sh``).

gsplat 1.4.0 imports ``gsplat.csrc`` first and JIT-compiles its CUDA kernels (about 190 s on an H200 with 16
jobs) only when that import fails. ``gsplat_cuda_prebuilt.so`` next to this file is that JIT build, made once on
the lent GPU machine's image (sm_90, its torch); if it does not load here (another torch or GPU), this raises
ImportError and gsplat compiles as usual.
"""

import importlib.util
import os

import torch  # noqa: F401  (the library links against torch's, which must be loaded first)

# What the library was built for (the lent H200 machine's image); anything else compiles instead, since a
# mismatched library can load and then fail at the first kernel launch. NO_FAST_MATH is not honoured here.
BUILT_FOR_TORCH = "2.11.0+cu130"
BUILT_FOR_CAPABILITY = (9, 0)

_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gsplat_cuda_prebuilt.so")
if torch.__version__ != BUILT_FOR_TORCH or not torch.cuda.is_available() or (
    torch.cuda.get_device_capability() != BUILT_FOR_CAPABILITY
):
    raise ImportError(f"prebuilt gsplat kernels are for torch {BUILT_FOR_TORCH} on sm_90; gsplat will compile them")
try:
    _spec = importlib.util.spec_from_file_location("gsplat_cuda", _path)
    if _spec is None or _spec.loader is None:
        raise OSError(f"cannot load {_path}")
    _lib = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_lib)
except Exception as err:  # noqa: BLE001 - any failure means: compile instead
    raise ImportError(f"prebuilt gsplat kernels do not load ({err}); gsplat will compile them") from err
globals().update({k: getattr(_lib, k) for k in dir(_lib) if not k.startswith("__")})
