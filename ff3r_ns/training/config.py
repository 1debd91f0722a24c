"""``TrainConfig``: the settings both training stages share, and the flags of ``ff3r-train`` and
``ff3r-pretrain-geometry`` (tyro makes one flag of each field, its docstring the help; see
:mod:`ff3r_ns.cli`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal, Optional, Tuple

from tyro.constructors import PrimitiveConstructorSpec

from ff3r_ns.core.network.config import PRESETS, FF3RConfig, preset



def _resume_path(args: list[str]) -> Path:
    if len(args) > 1:
        raise ValueError(f"takes at most one checkpoint, got {len(args)}")
    return Path(args[0]) if args else Path("")  # no value: the --out checkpoint (TrainConfig.__post_init__)


OPTIONAL_VALUE_PATH = PrimitiveConstructorSpec(
    nargs="*", metavar="[PATH]", instance_from_str=_resume_path,
    is_instance=lambda x: x is None or isinstance(x, Path), str_from_instance=lambda x: [] if x is None else [str(x)],
)
"""``--resume`` takes a path or none (argparse's ``nargs="?"``), which tyro has no type for."""


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
    preset: Literal["tiny", "tiny_semantic", "base", "vggt_1b"] = "tiny"
    """Architecture preset (:class:`FF3RConfig` classmethods); ``tiny_semantic`` is the shipped network's, to continue
    training it (``--init ff3r_ns/weights/ff3r_tiny.pt``)."""
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
    resume: Annotated[Optional[Path], OPTIONAL_VALUE_PATH] = None
    """Continue from this checkpoint and its ``.state.pt`` (optimizer, scheduler, step, RNG). Without a value: the
    ``--out`` checkpoint."""
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
        if self.resume is not None and self.resume == Path(""):
            self.resume = self.out
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
        cfg = preset(self.preset).with_fusion(self.fusion)
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
