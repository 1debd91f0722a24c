"""The one JSON envelope every benchmark writes (see the README's "Results" section).

Every measuring script ends with :func:`write_result`, which records the machine, the command that
produced the numbers, the commit and the date next to the rows, so that the README's tables and
plots can be regenerated from ``benchmarks/results/*.json`` alone.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any, Callable, Optional, Sequence

RESULTS_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def machine_info() -> dict[str, Any]:
    """Device name, torch and gsplat versions and CPU count."""
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    else:
        info["device"] = "cpu"
    try:
        from importlib.metadata import version

        info["gsplat"] = version("gsplat")
    except Exception:  # gsplat is optional on CPU-only machines
        info["gsplat"] = None
    return info


def git_commit() -> Optional[str]:
    """The checkout's short commit; ``FF3R_COMMIT`` overrides it (for copies of the tree without ``.git``)."""
    if os.environ.get("FF3R_COMMIT"):
        return os.environ["FF3R_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except Exception:
        return None


def timed(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, sync: Optional[Callable[[], None]] = None) -> float:
    """Median wall time of ``fn`` in seconds after ``warmup`` untimed calls (``sync`` e.g. cuda.synchronize)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return median(times)


ENVELOPE_KEYS = frozenset({"benchmark", "command", "commit", "date", "machine", "quick", "rows", "notes"})
"""The keys :func:`write_result` itself sets; ``extra`` adds the rest."""


def write_result(
    benchmark: str,
    rows: Sequence[dict[str, Any]],
    *,
    quick: bool = False,
    notes: Optional[str] = None,
    out: Optional[Path] = None,
    command: Optional[str] = None,
    extra: Optional[dict[str, Any]] = None,
) -> Path:
    """Write ``benchmarks/results/<benchmark>.json`` (or ``out``) in the shared envelope and return its path."""
    payload: dict[str, Any] = {
        "benchmark": benchmark,
        "command": command or " ".join(shlex.quote(a) for a in ["python", *sys.argv]),
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "quick": quick,
        "rows": list(rows),
    }
    if notes:
        payload["notes"] = notes
    if extra:
        payload.update(extra)
    path = Path(out) if out is not None else RESULTS_DIR / f"{benchmark}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
