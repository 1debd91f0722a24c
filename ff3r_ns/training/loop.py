"""The training loop both stages share: network construction, data sampling, the optimisation steps, DDP,
progress and logs, checkpoints and resume.

What a stage contributes (its losses, which data it may read, which parameters it trains) comes in
through a :class:`Stage`; see :mod:`ff3r_ns.training.train` (annotation-free feature training) and
:mod:`ff3r_ns.training.pretrain` (supervised geometry pretraining). The pieces live beside it:
:mod:`~ff3r_ns.training.config` (``TrainConfig``), :mod:`~ff3r_ns.training.optimizer` (AdamW and schedule),
:mod:`~ff3r_ns.training.distributed` (``torchrun``: how the global batch is split and what ranks exchange),
:mod:`~ff3r_ns.training.checkpointing` (the files written and resumed from), :mod:`~ff3r_ns.training.logs`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

import torch
from torch import Tensor, nn

from ff3r_ns.core.checkpoint import TeacherSettings, load_checkpoint, weight_mismatch
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.model import FF3R
from ff3r_ns.training.checkpointing import RunRecord, TrainingState, resume_training, save_training
from ff3r_ns.training.config import TrainConfig
from ff3r_ns.training.data import BankContents, ContextBatch, SceneBank, sample_window, step_rng
from ff3r_ns.training.distributed import (
    DistInfo, finish_distributed, gather, mean_over_ranks, out_of_time, parameter_checksum, setup_distributed,
    split_by_rank,
)
from ff3r_ns.training.logs import EventLog, MetricsLog, progress_bar
from ff3r_ns.training.optimizer import make_optimizer, make_scheduler


class LossLike(Protocol):
    """What a stage's step module returns: a differentiable ``total`` and named scalars for logging."""

    total: Tensor

    def scalars(self) -> dict[str, float]: ...


class Stage(Protocol):
    """One training stage: which data it reads, which parameters it trains, how it computes its loss."""

    name: str
    """Recorded as ``metadata["stage"]`` in the checkpoint."""

    def architecture(self, config: TrainConfig) -> FF3RConfig: ...

    def contents(self) -> BankContents: ...

    def prepare(self, network: FF3R) -> None:
        """Freeze what the stage does not train (called before the optimizer is built)."""

    def step_module(self, network: FF3R, device: torch.device) -> nn.Module:
        """An ``nn.Module`` owning ``network`` whose ``forward(list[ContextBatch])`` returns a :class:`LossLike`."""

    def teacher(self) -> Optional[TeacherSettings]: ...


@dataclass
class TrainSummary:
    """What a run did.

    Attributes:
        checkpoint: the checkpoint written (rank 0; the path on other ranks too).
        step: steps completed in total (including resumed ones).
        history: ``total`` loss of each step run in this invocation (the global batch's mean, on every rank).
        scalars: the last step's named scalars (averaged over ranks).
        checksum: a weighted parameter sum, equal across ranks when DDP kept them in sync.
    """

    checkpoint: Path
    step: int
    history: list[float]
    scalars: dict[str, float]
    checksum: float


def build_training_network(config: TrainConfig, stage: Stage, device: torch.device) -> FF3R:
    """The stage's architecture, seeded, with ``--init`` / ``--vggt`` weights loaded."""
    torch.manual_seed(config.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    arch = stage.architecture(config)
    net = FF3R(arch)
    if config.vggt is not None:
        from ff3r_ns.core.network.vggt_loader import load_vggt_checkpoint

        print(load_vggt_checkpoint(net, config.vggt).summary())
    if config.init is not None:
        load_init(net, arch, config.init, own_semantic_encoder=config.semantic_checkpoint is not None)
    return net.to(device)


def load_init(net: FF3R, arch: FF3RConfig, path: Path, own_semantic_encoder: bool = False) -> None:
    """Load ``path``'s weights; only fusion and semantic-encoder weights may be missing (e.g. from a no-fusion
    geometry pretraining); any other difference is an error naming it.

    With ``own_semantic_encoder`` (``--semantic-checkpoint``) the network's encoder is the one that file built: the
    init's encoder is not loaded over it, may differ in architecture, and the fusion layers (whose key/value width is
    the encoder's) are taken from the init only where their shapes agree, else they start fresh."""
    ckpt = load_checkpoint(path)
    ignore = ("fusion.", "semantic.") if own_semantic_encoder else ("fusion.",)
    diff = weight_mismatch(arch, ckpt.architecture, also_ignore=ignore)
    if diff:
        raise ValueError(f"--init {path}: architecture differs: " + "; ".join(diff[:4]))
    state = ckpt.network
    if own_semantic_encoder:
        shapes = {k: v.shape for k, v in net.state_dict().items()}
        state = {k: v for k, v in state.items()
                 if not k.startswith("semantic_encoder.") and not (k.startswith("fusion.") and shapes.get(k) != v.shape)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if "fusion.feature_skip.weight" in missing and own_semantic_encoder:
        # A new direct path from a pretrained encoder: start it where decoding gives back the encoder's features.
        net.fusion.start_feature_skip_as_inverse(net.feature_decoder.proj.weight, net.feature_decoder.proj.bias)
    missing = [k for k in missing if not k.startswith(("fusion.", "semantic_encoder."))]
    if missing or unexpected:
        raise ValueError(f"--init {path}: {len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")


def sample_batches(bank: SceneBank, config: TrainConfig, info: DistInfo, step: int) -> list[ContextBatch]:
    """This rank's context windows for ``step``: its share of the global batch, which is a pure function of seed
    and step (not of the number of ranks), so runs on different numbers of GPUs see the same samples."""
    # One generator for the whole job (rank slot 0 of step_rng): a one-process run draws what it always drew.
    rng = step_rng(config.seed, 0, step)
    draws = []
    for _ in range(info.world_size * config.batch_scenes):
        i = int(rng.integers(len(bank)))
        draws.append((i, sample_window(len(bank.scenes[i]), config.min_views, config.max_views, config.max_stride, rng)))
    return [bank.batch(i, frames, info.device) for i, frames in split_by_rank(draws, info.world_size)[info.rank]]


@dataclass
class _Run:
    """One invocation's live objects, shared by its steps and saves."""

    config: TrainConfig
    record: RunRecord
    info: DistInfo
    bank: SceneBank
    model: nn.Module
    """The stage's step module (DDP-wrapped on several ranks)."""
    state: TrainingState
    params: list[nn.Parameter]
    """The parameters it trains (their gradient norm is clipped)."""

    def step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns its named scalars, averaged over ranks."""
        config, opt, sched = self.config, self.state.optimizer, self.state.scheduler
        terms = self.model(sample_batches(self.bank, config, self.info, step))
        opt.zero_grad(set_to_none=True)
        terms.total.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip if config.grad_clip > 0 else float("inf"))
        # DDP averaged the gradients, so every rank sees the same norm and takes the same decision.
        if torch.isfinite(norm):
            opt.step()
        sched.step()
        self.state.step = step + 1
        return mean_over_ranks({**terms.scalars(), "grad_norm": float(norm), "lr": sched.get_last_lr()[0]}, self.info)

    def save(self) -> None:
        checksums = [float(c) for c in gather(parameter_checksum(self.state.network), self.info)]
        if self.info.is_main:
            save_training(self.record, self.state, checksums)


def _start(config: TrainConfig, stage: Stage, info: DistInfo, command: str) -> _Run:
    """Scenes, network, optimizer and schedule of a run, resumed from ``--resume`` when given."""
    arch = stage.architecture(config)
    # Every rank reads every scene: the global batch may put any scene on any rank (see sample_batches).
    bank = SceneBank(config.scenes, config.image_size, stage.contents(), arch.geometry.patch_size)
    net = build_training_network(config, stage, info.device)
    stage.prepare(net)
    opt = make_optimizer(net, config)  # before DDP: it may freeze the geometry modules
    step_module = stage.step_module(net, info.device)
    model: nn.Module = step_module
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(step_module, device_ids=None)
    state = TrainingState(net, opt, make_scheduler(opt, config))
    if config.resume is not None:
        resume_training(config.resume, arch, state)
    record = RunRecord(config, stage.name, arch, stage.teacher(), list(bank.classes), len(bank.paths), command,
                       getattr(stage, "metadata", lambda: {})())
    return _Run(config, record, info, bank, model, state, [p for p in net.parameters() if p.requires_grad])


def run_training(config: TrainConfig, stage: Stage, command: str = "") -> TrainSummary:
    """Train ``stage`` under ``config`` (single process, or one rank of a ``torchrun`` job).

    Returns:
        :class:`TrainSummary`.
    """
    info = setup_distributed(config.device)
    run = _start(config, stage, info, command)
    start = run.state.step
    end = config.steps if config.stop_after is None else min(config.steps, start + config.stop_after)
    log = EventLog(config.writer, config.log_dir or config.out.parent / "logs" / config.out.stem, config.out.stem, info.is_main)
    metrics = MetricsLog(config.metrics_jsonl if info.is_main else None, append=start > 0)
    history: list[float] = []
    scalars: dict[str, float] = {}
    t0 = clock = time.perf_counter()
    echo_every = max(config.log_every, (end - start) // 20)  # plain log lines, for non-interactive runs
    with progress_bar(info.is_main and config.progress) as progress:
        task = progress.add_task(stage.name, total=end - start, info="")
        for step in range(start, end):
            # The time limit's clock starts after the first step, so one-time warm-up (gsplat's CUDA compile)
            # does not eat the budget.
            if config.time_limit is not None and step > start and out_of_time(clock, config.time_limit, info):
                print(f"{stage.name}: time limit {config.time_limit:.0f} s reached after {step} steps; saving", flush=True)
                break
            scalars = run.step(step)
            history.append(scalars["total"])
            metrics.write({"step": step + 1, "time": time.perf_counter() - t0, **scalars})
            if (step + 1) % config.log_every == 0 or step == start:
                log.scalars(scalars, step + 1, stage.name)
            progress.update(task, advance=1, info=f"loss {scalars['total']:.4f}")
            if step == start:
                clock = time.perf_counter()
            done = step + 1
            if info.is_main and (done % echo_every == 0 or step == start):
                rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
                print(f"{stage.name} step {done}/{config.steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
                      + f" ({rate:.2f} steps/s)", flush=True)
            if done % config.save_every == 0 and done < end:
                run.save()
    run.save()
    end = run.state.step
    peaks = gather(torch.cuda.max_memory_allocated(info.device) / 1e9 if info.device.type == "cuda" else None, info)
    metrics.write({"final": True, "step": end, "world_size": info.world_size, "batch_scenes": config.batch_scenes,
                   "global_batch": config.batch_scenes * info.world_size, "peak_gb_per_rank": peaks})
    metrics.close()
    checksum = parameter_checksum(run.state.network)
    finish_distributed(info)
    print(f"{stage.name}: rank {info.rank}/{info.world_size} finished step {end}/{config.steps} in "
          f"{time.perf_counter() - t0:.1f} s, loss {history[-1] if history else float('nan'):.4f}, checksum {checksum:.6f}",
          flush=True)
    return TrainSummary(config.out, end, history, scalars, checksum)
