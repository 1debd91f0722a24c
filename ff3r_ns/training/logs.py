"""What a training run reports while it runs: nerfstudio's event writers, the ``--metrics-jsonl`` records and
the progress bar (rank 0 only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


class EventLog:
    """nerfstudio's event writers (tensorboard / wandb), rank 0 only; ``none`` writes nothing."""

    def __init__(self, kind: str, log_dir: Path, name: str, enabled: bool) -> None:
        self.writer = None
        if not enabled or kind == "none":
            return
        from nerfstudio.utils import writer as ns_writer

        log_dir.mkdir(parents=True, exist_ok=True)
        if kind == "tensorboard":
            self.writer = ns_writer.TensorboardWriter(log_dir=log_dir)
        elif kind == "wandb":
            self.writer = ns_writer.WandbWriter(log_dir=log_dir, experiment_name=name, project_name="ff3r-ns")
        else:
            raise ValueError(f"--writer must be tensorboard, wandb or none, got {kind!r}")

    def scalars(self, values: dict[str, float], step: int, prefix: str) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.write_scalar(f"{prefix}/{k}", v, step)


class MetricsLog:
    """``--metrics-jsonl``: one JSON object per line, flushed at once (a killed run keeps its steps); no-op
    without a path (and on ranks other than 0)."""

    def __init__(self, path: Optional[Path], append: bool = False) -> None:
        self.file = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a" if append else "w")

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def progress_bar(enabled: bool = True):
    """The training stages' rich progress bar (a task's ``info`` field is shown after the times)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    return Progress(*columns, disable=not enabled)
