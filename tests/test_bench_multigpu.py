"""benchmarks/multigpu.py: the global batch does not depend on the number of ranks, and the CPU/gloo version
of the benchmark runs end to end (1 vs 2 processes at the same global batch) with matching loss curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks import multigpu as bench
from ff3r_ns.training.config import TrainConfig
from ff3r_ns.training.distributed import DistInfo, split_by_rank
from ff3r_ns.training.loop import sample_batches


class _FakeBank:
    """What sample_batches reads of a SceneBank; a "batch" is just (scene index, frames)."""

    def __init__(self, frames_per_scene: list[int]) -> None:
        self.scenes = [range(n) for n in frames_per_scene]

    def __len__(self) -> int:
        return len(self.scenes)

    def batch(self, i: int, frames: list[int], device) -> tuple[int, list[int]]:
        return i, frames


def test_global_batch_is_split_by_rank_not_redrawn():
    bank = _FakeBank([12, 9, 20, 7, 15])
    cfg = lambda b: TrainConfig(scenes=Path("."), out=Path("x.pt"), batch_scenes=b, max_views=6, seed=3)  # noqa: E731
    cpu = torch.device("cpu")
    for step in range(8):
        one = sample_batches(bank, cfg(4), DistInfo(0, 1, 0, cpu), step)
        two = [sample_batches(bank, cfg(2), DistInfo(r, 2, r, cpu), step) for r in range(2)]
        four = [sample_batches(bank, cfg(1), DistInfo(r, 4, r, cpu), step) for r in range(4)]
        assert len(one) == 4 and [len(s) for s in two] == [2, 2] and [len(s) for s in four] == [1] * 4
        assert sorted(one) == sorted(b for s in two for b in s) == sorted(b for s in four for b in s)
    assert sample_batches(bank, cfg(4), DistInfo(0, 1, 0, cpu), 0) != sample_batches(bank, cfg(4), DistInfo(0, 1, 0, cpu), 1)


def test_split_by_rank_balances_views():
    draws = [(0, list(range(n))) for n in (8, 8, 2, 2, 7, 3, 5, 5)]
    assert split_by_rank(draws, 1) == [draws]  # one process: unchanged, in draw order
    shares = split_by_rank(draws, 2)
    assert [len(s) for s in shares] == [4, 4] and sorted(map(str, draws)) == sorted(str(d) for s in shares for d in s)
    assert [sum(len(f) for _, f in s) for s in shares] == [20, 20]  # contiguous halves would be 20 / 20 here ...
    skewed = [(0, list(range(n))) for n in (8, 8, 7, 7, 2, 2, 3, 3)]  # ... but 30 / 10 here
    assert [sum(len(f) for _, f in s) for s in split_by_rank(skewed, 2)] == [20, 20]
    assert all(s == sorted(s, key=skewed.index) for s in split_by_rank(skewed, 2))  # each share in draw order


def test_throughput_and_loss_comparison_helpers():
    steps = [{"time": t} for t in (10.0, 11.0, 11.5, 12.0, 12.5)]  # the first step holds a one-time cost
    rate, timed = bench.steps_per_second(steps, 0.2)
    assert timed == 4 and rate == pytest.approx(4 / 2.5)
    cmp = bench.compare_losses([1.0, 2.0], [1.0, 2.002], rtol=1e-2)
    assert cmp["losses_agree"] and cmp["loss_max_abs_diff"] == pytest.approx(0.002)
    assert cmp["loss_max_rel_diff"] == pytest.approx(0.001) and cmp["loss_mean_abs_diff"] == pytest.approx(0.001)
    assert not bench.compare_losses([1.0], [1.1], rtol=1e-2)["losses_agree"]
    assert not bench.compare_losses([1.0], [float("nan")], rtol=1e-2)["losses_agree"]


@pytest.mark.slow
def test_bench_multigpu_cpu_gloo_end_to_end(tmp_path):
    out, plots, steps = tmp_path / "multigpu.json", tmp_path / "plots", 6
    bench.main(["--device", "cpu", "--backend", "gloo", "--nproc", "2", "--global-batch", "2", "--steps", str(steps),
                "--num-scenes", "2", "--scene-views", "6", "--scene-size", "56", "--image-size", "28", "--max-views", "3",
                "--init", "none", "--rtol", "1e-3", "--work", str(tmp_path / "work"), "--out", str(out),
                "--plots-dir", str(plots), "--quick"])
    data = json.loads(out.read_text())
    assert data["benchmark"] == "multigpu" and data["quick"] is True and data["machine"]["device"] == "cpu"
    rows = {r["gpus"]: r for r in data["rows"]}
    assert set(rows) == {1, 2}
    assert rows[1]["batch_per_gpu"] == 2 and rows[2]["batch_per_gpu"] == 1
    for r in rows.values():
        assert r["global_batch"] == 2 and r["steps"] == steps and len(r["loss_curve"]) == steps
        assert math.isfinite(r["steps_per_second"]) and r["steps_per_second"] > 0
        assert r["timed_steps"] == steps - 2 and r["peak_gb_per_gpu"] is None  # CPU: no CUDA memory
        assert all(math.isfinite(v) for v in r["loss_curve"])
    s = data["summary"]
    assert s["speedup"] == pytest.approx(rows[2]["steps_per_second"] / rows[1]["steps_per_second"])
    assert s["scaling_efficiency"] == pytest.approx(s["speedup"] / 2)
    # Same samples, DDP's mean of the ranks' means = the one-process mean: only summation order differs.
    assert s["losses_agree"] and s["loss_max_rel_diff"] < 1e-3, s
    assert (plots / "multigpu.png").read_bytes().startswith(b"\x89PNG")
    # The README renderer reads it: table, the speed-up target unchecked on CPU, the loss target met.
    from benchmarks import make_results as mr

    block = mr.build_block(mr.load_results(tmp_path), tmp_path / "p", tmp_path)
    assert "### Multi-GPU training (`multigpu.json`)" in block and "scaling efficiency" in block
    assert "➖ not checked: 2 GPUs" in block and "✅ met: loss curves agree" in block
