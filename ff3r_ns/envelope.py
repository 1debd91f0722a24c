"""The one JSON envelope every result file is written in: ``ff3r-eval``'s ``eval.json`` and every benchmark's
``benchmarks/results/<name>.json`` (see the README's "Results" section).

:func:`write_result` records the machine, the command that produced the numbers, the commit and the date next to
the rows, so that the README's tables and plots can be regenerated from the result files alone. The benchmarks
(``benchmarks/``, outside the installed package) write through ``benchmarks.common``, which adds their default
paths and timing helper.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


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


ENVELOPE_KEYS = frozenset({"benchmark", "command", "commit", "date", "machine", "quick", "rows", "notes"})
"""The keys :func:`write_result` itself sets; ``extra`` adds the rest."""


def write_result(
    benchmark: str,
    rows: Sequence[dict[str, Any]],
    *,
    out: Path,
    quick: bool = False,
    notes: Optional[str] = None,
    command: Optional[str] = None,
    extra: Optional[dict[str, Any]] = None,
) -> Path:
    """Write ``out`` in the shared envelope and return its path.

    Args:
        benchmark: the file's ``"benchmark"`` name (``eval``, ``render``, ...).
        rows: one JSON object per measured case.
        out: the file to write (its folder is created).
        quick: marks a reduced run.
        notes: free text shown under the README's table.
        command: the command that produced the numbers (default: this process's ``python`` + ``sys.argv``).
        extra: more top-level keys (``summary``, ``settings``, ...).
    """
    payload: dict[str, Any] = {
        "benchmark": benchmark,
        "command": command or shlex.join(["python", *sys.argv]),
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
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
