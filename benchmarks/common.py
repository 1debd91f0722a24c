"""What every benchmark shares: where results go, a timer, the command line, and writing the result file.

Each benchmark ends with :func:`write_result`, which writes ``benchmarks/results/<benchmark>.json`` in the
shared envelope (:func:`ff3r_ns.envelope.write_result`) with the command as it is typed from the repository
root (``python -m benchmarks.<name> ...``).
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any, Callable, Optional, Sequence

from ff3r_ns import envelope
from ff3r_ns.envelope import ENVELOPE_KEYS, machine_info

__all__ = ["ENVELOPE_KEYS", "PLOTS_DIR", "RESULTS_DIR", "ROOT", "command_line", "machine_info", "timed", "write_result"]

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (benchmarks run from there)."""
RESULTS_DIR = ROOT / "benchmarks" / "results"
PLOTS_DIR = ROOT / "benchmarks" / "plots"


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


def command_line(module: Optional[str] = None, argv: Optional[Sequence[str]] = None) -> str:
    """This run as it is typed from the repository root: ``python -m MODULE ARGS``.

    Args:
        module: the benchmark module (default: the ``benchmarks.*`` module this process runs as ``python -m``;
            for any other process, its ``python`` + ``sys.argv``).
        argv: the arguments (default ``sys.argv[1:]``).
    """
    if module is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = getattr(spec, "name", "") or ""
        module = name if name.startswith("benchmarks.") else None
    head = ["python", "-m", module] if module else ["python", sys.argv[0]]
    return shlex.join([*head, *(sys.argv[1:] if argv is None else argv)])


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
    """Write ``benchmarks/results/<benchmark>.json`` (or ``out``) in the shared envelope and return its path.

    ``command`` defaults to :func:`command_line`; the other arguments are :func:`ff3r_ns.envelope.write_result`'s.
    """
    path = Path(out) if out is not None else RESULTS_DIR / f"{benchmark}.json"
    return envelope.write_result(benchmark, rows, out=path, quick=quick, notes=notes, command=command or command_line(),
                                 extra=extra)
