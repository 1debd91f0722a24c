"""The training loop both stages share: network construction, data sampling, AdamW with gradient
clipping and a warm-up + cosine/linear schedule, DDP, progress, event writers, checkpoints and resume.

What a stage contributes (its losses, which data it may read, which parameters it trains) comes in
through a :class:`Stage`; see :mod:`ff3r_ns.training.train` (annotation-free feature training) and
:mod:`ff3r_ns.training.pretrain` (supervised geometry pretraining).

Distributed: when launched by ``torchrun`` (``WORLD_SIZE > 1``) every rank joins a process group (NCCL on
CUDA, gloo on CPU) and reads every scene. Each step's global batch (``batch_scenes * world_size`` context
windows) is drawn from one generator seeded by ``(seed, step)`` and split by rank (equal counts, balanced
numbers of views), so it does not depend on the number of ranks: DDP averages the gradients of the ranks' per-rank means, which is the mean over the
global batch, and an N-rank run with ``--batch-scenes B`` follows a one-process run with ``--batch-scenes
N*B`` (up to floating-point summation order). Logged losses are averaged over ranks; only rank 0 writes files
and logs.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional, Protocol, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ff3r_ns.core.checkpoint import FF3RCheckpoint, TeacherSettings, load_checkpoint, save_checkpoint, weight_mismatch
from ff3r_ns.core.network.config import FF3RConfig
from ff3r_ns.core.network.model import FF3R
from ff3r_ns.training.data import BankContents, ContextBatch, SceneBank, sample_window, step_rng
from ff3r_ns.training.provenance import command_chain

PRESETS = ("tiny", "base", "vggt_1b")


@dataclass
class TrainConfig:
    """Settings common to both training stages (each is a command-line flag of the same name)."""

    scenes: Path
    """Directory searched (recursively) for scene folders with a ``transforms.json``."""
    out: Path
    """Checkpoint to write; the training state goes next to it as ``<stem>.state.pt``."""
    steps: int = 1000
    """Total optimisation steps (the LR schedule spans them)."""
    stop_after: Optional[int] = None
    """Stop after this many steps in this invocation (time-limited jobs); continue with ``--resume``."""
    time_limit: Optional[float] = None
    """Stop (and save) once this many seconds of training have passed in this invocation; the schedule is
    not compressed, so prefer sizing ``steps`` right and use this as a safety net for fixed budgets."""
    preset: Literal["tiny", "base", "vggt_1b"] = "tiny"
    """Architecture preset (:class:`FF3RConfig` classmethods)."""
    fusion: bool = True
    """Build the semantic fusion layers (``--no-fusion`` for the ablation)."""
    feature_skip: bool = False
    """Also feed the semantic encoder's features straight into the Gaussian features (``FusionConfig.feature_skip``:
    a zero-initialised 1x1 convolution, new in an ``--init`` checkpoint that lacks it)."""
    feature_refine_width: int = 0
    """With ``feature_skip``: width of its image-guided refinement (``FusionConfig.feature_refine_width``; 0: none)."""
    freeze: Tuple[str, ...] = ()
    """Further modules kept frozen, by name prefix (e.g. ``gaussian_head`` so that a stage 2 around a new semantic
    encoder trains only the semantic path: fusion, feature skip and decoder, with the shipped colours untouched)."""
    fusion_layers: Optional[Tuple[int, ...]] = None
    """Aggregator depths of the fusion cross-attention, replacing the preset's (``FusionConfig.layers``); empty: the
    encoder reaches only the Gaussian features, through ``feature_skip``, and the frozen geometry sees no new tokens."""
    init: Optional[Path] = None
    """Start from this FF3R checkpoint's weights (e.g. the geometry pretraining's); fusion and semantic
    encoder weights may be absent from it."""
    layer_scale_init: Optional[float] = None
    """Initial LayerScale value of the aggregator's and the camera trunk's blocks, for weights trained from
    scratch (default: the preset's, VGGT's 0.01). With 1.0 and two-view contexts, the tiny preset's stage 1
    learned relative poses that beat the constant-pose baseline on unseen rooms (README, The shipped model)."""
    vggt: Optional[Path] = None
    """Load a VGGT checkpoint into the aggregator, camera and depth heads (needs VGGT's sizes)."""
    semantic_checkpoint: Optional[Path] = None
    """Local weights of the semantic encoder (presets other than tiny need them when fusion is on)."""
    image_size: int = 224
    """Longest side of the network input in pixels."""
    max_views: int = 8
    """Largest context size; each step draws 2..max_views views."""
    min_views: int = 2
    """Smallest context size."""
    max_stride: int = 2
    """Largest frame step inside a context window (1: contiguous frames)."""
    batch_scenes: int = 1
    """Scenes per step and rank."""
    lr: float = 2e-4
    """Peak learning rate of AdamW."""
    geometry_lr_scale: float = 1.0
    """Learning-rate multiplier of the geometry modules (aggregator, camera and depth heads; fusion layers
    excluded); 0 freezes them. Below 1 keeps a pretrained geometry from drifting in later stages."""
    weight_decay: float = 0.05
    """AdamW weight decay (not applied to biases and norms)."""
    warmup_steps: int = 50
    """Linear warm-up steps."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    min_lr_ratio: float = 0.05
    """Final learning rate as a fraction of ``lr``."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (<= 0: off)."""
    seed: int = 0
    """Seeds the initial weights and every data draw."""
    resume: Optional[Path] = None
    """Continue from this checkpoint and its ``.state.pt`` (optimizer, scheduler, step, RNG)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device (auto: CUDA when available)."""
    writer: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    """nerfstudio event writer for the loss curves."""
    log_dir: Optional[Path] = None
    """Event-writer directory (default: ``<out dir>/logs/<out stem>``)."""
    log_every: int = 10
    """Write scalars every this many steps."""
    save_every: int = 500
    """Write the checkpoint and state every this many steps (and at the end)."""
    grad_checkpoint: bool = False
    """Recompute aggregator activations in backward (memory for compute)."""
    progress: bool = True
    """Show a rich progress bar (rank 0)."""
    metrics_jsonl: Optional[Path] = None
    """Rank 0 writes one JSON line per step (step, loss terms averaged over ranks, seconds since training
    started) and a last line with every rank's peak CUDA memory (benchmarks; appended to on resume)."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {PRESETS}, got {self.preset!r}")
        if self.steps < 1 or self.batch_scenes < 1 or self.log_every < 1 or self.save_every < 1:
            raise ValueError("--steps, --batch-scenes, --log-every and --save-every must be >= 1")
        if not 2 <= self.min_views <= self.max_views:
            raise ValueError(f"need 2 <= --min-views <= --max-views, got {self.min_views} and {self.max_views}")
        if self.layer_scale_init is not None and not self.layer_scale_init > 0:
            raise ValueError(f"--layer-scale-init must be > 0, got {self.layer_scale_init}")
        if self.lr <= 0 or self.geometry_lr_scale < 0:
            raise ValueError(f"--lr must be > 0 and --geometry-lr-scale >= 0, got {self.lr} and {self.geometry_lr_scale}")

    def architecture(self) -> FF3RConfig:
        """The preset with this run's switches applied."""
        cfg = getattr(FF3RConfig, self.preset)().with_fusion(self.fusion)
        if self.feature_skip:
            cfg = replace(cfg, fusion=replace(cfg.fusion, feature_skip=True, feature_refine_width=self.feature_refine_width))
        if self.fusion_layers is not None:
            cfg = replace(cfg, fusion=replace(cfg.fusion, layers=tuple(self.fusion_layers)))
        if self.grad_checkpoint:
            cfg = replace(cfg, geometry=replace(cfg.geometry, grad_checkpoint=True))
        if self.layer_scale_init is not None:
            cfg = replace(cfg, geometry=replace(cfg.geometry, init_values=self.layer_scale_init),
                          heads=replace(cfg.heads, camera_init_values=self.layer_scale_init))
        if self.semantic_checkpoint is not None:
            sem = replace(cfg.semantic, checkpoint=str(self.semantic_checkpoint), weights="load")
            from ff3r_ns.training.pretrain_semantic import encoder_settings

            # A stand-in encoder from ff3r-pretrain-semantic carries its own architecture; other files fit the preset's.
            cfg = replace(cfg, semantic=replace(sem, **encoder_settings(self.semantic_checkpoint)))
        return cfg


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
class DistInfo:
    """This process's place in the (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistInfo:
    """Join the ``torchrun`` process group when there is one (NCCL on CUDA, gloo on CPU)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but CUDA is not available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


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


def state_path(checkpoint: Path) -> Path:
    """``run.pt`` -> ``run.state.pt``: the optimizer/scheduler/step/RNG file next to a checkpoint."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".state.pt")


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine or linear decay to ``min_lr_ratio``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    t = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    decay = 0.5 * (1 + math.cos(math.pi * t)) if config.schedule == "cosine" else 1.0 - t
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * decay


def parameter_checksum(module: nn.Module) -> float:
    """``sum_i (i + 1) * sum(p_i)`` in float64: cheap, order-sensitive fingerprint of the weights."""
    with torch.no_grad():
        return float(sum((i + 1) * p.detach().double().sum() for i, p in enumerate(module.parameters())))


def build_network(config: TrainConfig, stage: Stage, device: torch.device) -> FF3R:
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


GEOMETRY_PREFIXES = ("aggregator.", "camera_head.", "depth_head.")
"""VGGT's modules: what ``geometry_lr_scale`` applies to (the fusion layers live in ``fusion.``)."""


def make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norms; geometry modules at ``geometry_lr_scale`` (0: frozen); the modules
    named in ``config.freeze`` frozen."""
    frozen = (GEOMETRY_PREFIXES if config.geometry_lr_scale == 0 else ()) + tuple(f"{m.rstrip('.')}." for m in config.freeze)
    for name, p in net.named_parameters():
        if name.startswith(frozen):
            p.requires_grad_(False)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith(GEOMETRY_PREFIXES), p.ndim >= 2), []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "lr": config.lr * (config.geometry_lr_scale if geo else 1.0),
          "weight_decay": config.weight_decay if decay else 0.0} for (geo, decay), ps in sorted(groups.items())],
        lr=config.lr, betas=(0.9, 0.95),
    )


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


def split_by_rank(draws: list[tuple[int, list[int]]], world_size: int) -> list[list[tuple[int, list[int]]]]:
    """``draws`` (scene index, frames) in ``world_size`` equal-count shares with balanced numbers of views.

    A step waits for its slowest rank and context sizes vary (``min_views..max_views``), so contiguous slices
    would leave GPUs idle (~10% at 4 scenes per rank); equal counts keep DDP's mean of the ranks' means equal
    to the global batch's mean. Greedy: largest context first, to the least-loaded rank with room. Every rank
    computes the same split; a share keeps the draw order (one rank: ``draws`` unchanged).
    """
    per_rank = len(draws) // world_size
    load, shares = [0] * world_size, [[] for _ in range(world_size)]  # shares: indices into draws
    for j in sorted(range(len(draws)), key=lambda j: -len(draws[j][1])):  # stable: ties in draw order
        r = min((r for r in range(world_size) if len(shares[r]) < per_rank), key=lambda r: load[r])
        shares[r].append(j)
        load[r] += len(draws[j][1])
    return [[draws[j] for j in sorted(share)] for share in shares]


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """``values`` averaged over ranks (each rank holds the mean over its equal share of the global batch, so
    this is the global batch's mean); keys present on some ranks only are averaged where present."""
    if info.world_size == 1:
        return values
    gathered = _gather(values, info)  # objects, not one tensor: robust to a term missing on a rank
    keys = list(dict.fromkeys(k for g in gathered for k in g))
    return {k: sum(g[k] for g in gathered if k in g) / sum(k in g for g in gathered) for k in keys}


def _save(path: Path, net: FF3R, config: TrainConfig, stage: Stage, bank: SceneBank, opt, sched, step: int,
          command: str, checksums: list[float]) -> None:
    meta = {
        "stage": stage.name, "step": step, "steps": config.steps, "seed": config.seed, "command": command,
        "command_chain": command_chain(command, config.init, config.semantic_checkpoint),
        "preset": config.preset, "fusion": config.fusion, "scenes": len(bank.paths), "rank_checksums": checksums,
        "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }
    meta.update(getattr(stage, "metadata", lambda: {})())
    teacher = stage.teacher()
    arch = stage.architecture(config)
    if arch.semantic.checkpoint is not None:
        # The encoder's weights are in the state dict: the checkpoint must not need the file it was built from.
        arch = replace(arch, semantic=replace(arch.semantic, checkpoint=None, weights="random"))
    save_checkpoint(path, FF3RCheckpoint(
        network=net.state_dict(), architecture=arch, image_size=config.image_size,
        teacher=teacher, classes=list(bank.classes), metadata=meta,
    ))
    state = {
        "step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    tmp = state_path(path).with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(state_path(path))


def run_training(config: TrainConfig, stage: Stage, command: str = "") -> TrainSummary:
    """Train ``stage`` under ``config`` (single process, or one rank of a ``torchrun`` job).

    Returns:
        :class:`TrainSummary`.
    """
    info = setup_distributed(config.device)
    arch = stage.architecture(config)
    # Every rank reads every scene: the global batch may put any scene on any rank (see sample_batches).
    bank = SceneBank(config.scenes, config.image_size, stage.contents(), arch.geometry.patch_size)
    net = build_network(config, stage, info.device)
    stage.prepare(net)
    opt = make_optimizer(net, config)  # before DDP: it may freeze the geometry modules
    step_module = stage.step_module(net, info.device)
    model: nn.Module = step_module
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(step_module, device_ids=None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, config))

    start = 0
    if config.resume is not None:
        ckpt = load_checkpoint(config.resume)
        diff = weight_mismatch(arch, ckpt.architecture)
        if diff:
            raise ValueError(f"--resume {config.resume}: it was trained with a different network: " + "; ".join(diff[:4]))
        if not state_path(config.resume).is_file():
            raise FileNotFoundError(f"--resume needs the training state {state_path(config.resume)} next to the checkpoint")
        net.load_state_dict(ckpt.network)
        state = torch.load(state_path(config.resume), map_location="cpu", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start = int(state["step"])
    end = config.steps if config.stop_after is None else min(config.steps, start + config.stop_after)

    log = EventLog(config.writer, config.log_dir or config.out.parent / "logs" / config.out.stem, config.out.stem, info.is_main)
    metrics = MetricsLog(config.metrics_jsonl if info.is_main else None, append=start > 0)
    history: list[float] = []
    scalars: dict[str, float] = {}
    params = [p for p in net.parameters() if p.requires_grad]
    t0 = clock = time.perf_counter()
    done = start
    echo_every = max(config.log_every, (end - start) // 20)  # plain log lines, for non-interactive runs
    with progress_bar(info.is_main and config.progress) as progress:
        task = progress.add_task(stage.name, total=end - start, info="")
        for step in range(start, end):
            # The time limit's clock starts after the first step, so one-time warm-up (gsplat's CUDA compile)
            # does not eat the budget.
            if config.time_limit is not None and step > start and _out_of_time(clock, config.time_limit, info):
                print(f"{stage.name}: time limit {config.time_limit:.0f} s reached after {step} steps; saving", flush=True)
                break
            terms = model(sample_batches(bank, config, info, step))
            opt.zero_grad(set_to_none=True)
            terms.total.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip if config.grad_clip > 0 else float("inf"))
            # DDP averaged the gradients, so every rank sees the same norm and takes the same decision.
            if torch.isfinite(norm):
                opt.step()
            sched.step()
            scalars = mean_over_ranks({**terms.scalars(), "grad_norm": float(norm), "lr": sched.get_last_lr()[0]}, info)
            history.append(scalars["total"])
            metrics.write({"step": step + 1, "time": time.perf_counter() - t0, **scalars})
            if (step + 1) % config.log_every == 0 or step == start:
                log.scalars(scalars, step + 1, stage.name)
            progress.update(task, advance=1, info=f"loss {scalars['total']:.4f}")
            done = step + 1
            if step == start:
                clock = time.perf_counter()
            if info.is_main and (done % echo_every == 0 or step == start):
                rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
                print(f"{stage.name} step {done}/{config.steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
                      + f" ({rate:.2f} steps/s)", flush=True)
            if done % config.save_every == 0 and done < end:
                _save_all(config, stage, net, bank, opt, sched, done, command, info)
    end = done
    _save_all(config, stage, net, bank, opt, sched, end, command, info)
    peaks = _gather(torch.cuda.max_memory_allocated(info.device) / 1e9 if info.device.type == "cuda" else None, info)
    metrics.write({"final": True, "step": end, "world_size": info.world_size, "batch_scenes": config.batch_scenes,
                   "global_batch": config.batch_scenes * info.world_size, "peak_gb_per_rank": peaks})
    metrics.close()
    checksum = parameter_checksum(net)
    if info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    elapsed = time.perf_counter() - t0
    print(f"{stage.name}: rank {info.rank}/{info.world_size} finished step {end}/{config.steps} in {elapsed:.1f} s, "
          f"loss {history[-1] if history else float('nan'):.4f}, checksum {checksum:.6f}", flush=True)
    return TrainSummary(config.out, end, history, scalars, checksum)


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


def _gather(value, info: DistInfo) -> list:
    """``value`` of every rank, in rank order (on every rank)."""
    if info.world_size == 1:
        return [value]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def _save_all(config: TrainConfig, stage: Stage, net: FF3R, bank: SceneBank, opt, sched, step: int, command: str,
              info: DistInfo) -> None:
    checksums = [float(c) for c in _gather(parameter_checksum(net), info)]
    if info.is_main:
        _save(config.out, net, config, stage, bank, opt, sched, step, command, checksums)


def _out_of_time(t0: float, limit: float, info: DistInfo) -> bool:
    """Rank 0's clock decides for every rank, so all stop at the same step."""
    flag = torch.tensor([float(time.perf_counter() - t0 > limit)], device=info.device)
    if info.world_size > 1:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def progress_bar(enabled: bool = True):
    """The training stages' rich progress bar (a task's ``info`` field is shown after the times)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    return Progress(*columns, disable=not enabled)
