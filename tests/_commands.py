"""Run this environment's console scripts in tests, and the shared trained run's folder (see tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TRAINED_STEPS = 2  # refinement steps of the shared run: trained (not only feedforward), a few seconds on a CPU


def run_command(*cmd: str, timeout: float = 900) -> str:
    """Run a console script of this environment (``ns-train``, ``ff3r-export``, ...) as a user types it; its
    stdout + stderr, or a test failure with their tails."""
    out = subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                         timeout=timeout)  # fmt: skip
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@dataclass(frozen=True)
class TrainedRun:
    """An ``ns-train ff3r-tiny`` run on the CPU: 12 generated 64 px views, black background, ``TRAINED_STEPS``
    refinement steps. Read it; do not write into it (other tests share it)."""

    scene: Path  # the generated nerfstudio-data folder (transforms.json, images/, depth/, labels/)
    config: Path  # the run's config.yml
    log: str  # ns-train's stdout and stderr

    @property
    def checkpoints(self) -> list[str]:
        """File names of the run's checkpoints (nerfstudio_models/step-*.ckpt), sorted."""
        return sorted(p.name for p in (self.config.parent / "nerfstudio_models").glob("step-*.ckpt"))


def train_shared_run(work: Path) -> TrainedRun:
    """``ff3r-make-scene`` then ``ns-train ff3r-tiny`` into ``work``."""
    scene = work / "scene"
    run_command("ff3r-make-scene", str(scene), "--views", "12", "--width", "64", "--height", "64", "--no-shadows",
                "--num-points", "2000", timeout=300)  # fmt: skip
    log = run_command(
        "ns-train", "ff3r-tiny", "--data", str(scene), "--output-dir", str(work / "outputs"), "--experiment-name",
        "shared", "--timestamp", "run", "--vis", "tensorboard", "--machine.device-type", "cpu",
        "--max-num-iterations", str(TRAINED_STEPS),
        # the viewer test tells the room from the empty view by a black background (splatfacto's default shows
        # viser's grey); no other user of the run looks at the background
        "--pipeline.model.background-color", "black",
    )  # fmt: skip
    run = TrainedRun(scene, work / "outputs" / "shared" / "ff3r-tiny" / "run" / "config.yml", log)
    assert run.config.is_file() and run.checkpoints == [f"step-{TRAINED_STEPS - 1:09d}.ckpt"], (run.checkpoints, log[-3000:])
    return run
