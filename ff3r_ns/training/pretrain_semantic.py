"""``ff3r-pretrain-semantic``: a small semantic encoder pretrained to reproduce the 2D teacher (stage 0).

FF3R's semantic encoder is a pretrained 2D foundation model (CLIP through open_clip, or DINO), frozen while the
network trains. This project's tiny network cannot carry a real CLIP, and a randomly initialised one gives the
fusion layers nothing to inject. This stage is the **stand-in for that pretraining**: a small open_clip ViT learns,
on generated rooms, to reproduce the offline teacher's dense features (:mod:`ff3r_ns.core.network.teacher`) with
``1 - cos``, as a foundation model's patch features would carry a scene's semantics. Labels enter only through
the teacher, exactly as in stage 2; a user with real photos passes pretrained CLIP weights instead.

The output is an open_clip checkpoint (``state_dict``) whose ``ff3r`` entry records the architecture overrides,
the dense readout, the teacher settings, the command and the evaluation. ``ff3r-train --semantic-checkpoint FILE``
(:class:`~ff3r_ns.training.config.TrainConfig`) builds the encoder from that entry and keeps it frozen.

Example::

    ff3r-pretrain-semantic --scenes scenes/train --eval-scenes scenes/eval --out runs/semantic.pt
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import torch
import torch.nn.functional as F

from ff3r_ns.cli import command_line, parse, run_cli
from ff3r_ns.core.checkpoint import TeacherSettings
from ff3r_ns.core.losses import cosine_distance
from ff3r_ns.core.network.config import standin_open_clip_kwargs
from ff3r_ns.core.network.semantic import OpenCLIPEncoder, _LazyTokenizer
from ff3r_ns.training.data import BankContents, SceneBank, scene_folders_under, scene_view_ids
from ff3r_ns.training.logs import progress_bar
from ff3r_ns.training.optimizer import make_scheduler

MODEL_NAME = "ViT-B-16"
"""open_clip architecture the overrides apply to (its text side is shrunk to a stub: only images are used)."""
FORMAT = "ff3r-semantic-encoder-1"
"""``checkpoint["ff3r"]["format"]`` of the files this stage writes."""


@dataclass
class SemanticPretrainConfig:
    """``ff3r-pretrain-semantic``: train a small open_clip ViT to reproduce the offline teacher's dense features."""

    scenes: Path
    """Directory of training scene folders (generated rooms with labels: the teacher is made from them)."""
    out: Path
    """Checkpoint to write (an open_clip state dict with an ``ff3r`` metadata entry)."""
    eval_scenes: Optional[Path] = None
    """Unseen scene folders to score the encoder on (mIoU of its features' nearest class, and the teacher's)."""
    image_size: int = 112
    """Longest side of the input in pixels (the network's input size)."""
    width: int = 64
    """ViT width."""
    layers: int = 3
    """ViT blocks."""
    heads: int = 4
    """Attention heads per block."""
    patch_size: int = 14
    """Pixels per patch of the encoder."""
    grid_patch: int = 14
    """Input pixels per cell of the encoder's output grid (input side / this), trained at the scale the network asks
    for it (``FF3R.forward``, which reads it as ``SemanticConfig.grid_patch``): 14 is the geometry token grid; finer
    grids (with ``patch_size`` to match) carry sharper semantics to the Gaussian features (``--feature-skip``)."""
    teacher: TeacherSettings = field(default_factory=TeacherSettings)
    """The offline teacher to reproduce (its ``dim`` is the encoder's output width)."""
    steps: int = 6000
    """Optimisation steps (6000: 337 s on 2 CPU cores for the committed encoder)."""
    scenes_per_step: int = 4
    """Scenes drawn per step."""
    views_per_scene: int = 8
    """Views drawn from each of them."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    warmup_steps: int = 100
    """Steps of linear warm-up."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after the warm-up."""
    min_lr_ratio: float = 0.05
    """Learning rate at the end, as a fraction of the peak."""
    weight_decay: float = 0.05
    """AdamW weight decay (matrices only)."""
    seed: int = 0
    """Seed of the initial weights and of the sampling."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    log_every: int = 100
    """Steps between log lines."""
    eval_views: int = 8
    """Views scored per evaluation scene (evenly spaced)."""


def standin_kwargs(config: SemanticPretrainConfig) -> dict[str, Any]:
    """``open_clip.create_model`` overrides of the stand-in encoder: a ViT whose projection outputs the teacher's width."""
    return standin_open_clip_kwargs(config.width, config.layers, config.heads, config.patch_size, config.teacher.dim)


def build_encoder(model_kwargs: dict[str, Any], freeze: bool = False) -> OpenCLIPEncoder:
    """The stand-in encoder (random weights) with the ``tokens`` dense readout (the last block's output)."""
    import open_clip

    model = open_clip.create_model(MODEL_NAME, pretrained=None, **model_kwargs)
    return OpenCLIPEncoder(model, _LazyTokenizer(MODEL_NAME, model_kwargs["text_cfg"]["context_length"]), "tokens", freeze)


def dense_loss(encoder: OpenCLIPEncoder, images: torch.Tensor, teacher: torch.Tensor, grid_patch: int) -> torch.Tensor:
    """``1 - cos`` between the encoder's dense features, bilinearly upsampled, and the teacher's.

    Args:
        encoder: the encoder being trained.
        images: ``[V, 3, h, w]`` in [0, 1].
        teacher: ``[V, hf, wf, D]`` unit teacher features.
        grid_patch: the output grid is ``(h // grid_patch, w // grid_patch)``.
    """
    grid = (images.shape[2] // grid_patch, images.shape[3] // grid_patch)
    feats = encoder(images, grid=grid)  # [V, D, gh, gw]
    feats = F.interpolate(feats, size=teacher.shape[1:3], mode="bilinear", align_corners=False)
    return cosine_distance(feats.permute(0, 2, 3, 1), teacher.float())


@torch.no_grad()
def evaluate(encoder: OpenCLIPEncoder, root: Path, config: SemanticPretrainConfig) -> dict[str, float]:
    """mIoU of the encoder's features (nearest teacher class embedding, upsampled to the label maps), of the teacher
    itself on the same pixels, and of the teacher averaged over the encoder's grid cells (what a perfect encoder of
    this grid would score), over ``config.eval_views`` views of every scene under ``root``."""
    from ff3r_ns.core.metrics import confusion_matrix, segmentation_scores
    from ff3r_ns.core.semantics import segment_labels
    from ff3r_ns.core.reconstruct import network_input_size, resize_images
    from ff3r_ns.nerfstudio.scene import load_scene

    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    cms: dict[str, torch.Tensor] = {}
    for path in scene_folders_under(root):
        scene = load_scene(path)
        if scene.labels is None or not scene.classes:
            raise ValueError(f"evaluation scene {path} has no labels/classes")
        teacher = config.teacher.build(scene.classes)
        k, embeddings = len(scene.classes), teacher.class_embeddings()
        picks = torch.linspace(0, len(scene) - 1, min(config.eval_views, len(scene))).round().long()
        ids = scene_view_ids(path.name, len(scene))[picks] + 1_000_000  # noise no training view had
        labels = scene.labels[picks]  # [V, H, W]
        h, w = network_input_size(scene.images.shape[1], scene.images.shape[2], config.image_size, config.grid_patch)
        grid = (h // config.grid_patch, w // config.grid_patch)

        def score(name: str, feats: torch.Tensor) -> None:  # feats [V, D, h', w'], upsampled to the labels
            feats = F.interpolate(feats, size=labels.shape[1:], mode="bilinear", align_corners=False)
            cm = confusion_matrix(segment_labels(feats.permute(0, 2, 3, 1), embeddings), labels, k)
            cms[name] = cms[name] + cm if name in cms else cm

        score("miou", encoder(resize_images(scene.images[picks], (h, w)).to(device), grid=grid).float().cpu())
        t = teacher.features(labels, ids)  # [V, D, H, W]
        score("teacher_miou", t)
        # The best a feature grid of this size can do: the teacher itself, averaged over each cell and upsampled.
        score("teacher_on_grid_miou", F.adaptive_avg_pool2d(t, grid))
    encoder.train(was_training)
    return {name: segmentation_scores(cm).miou for name, cm in cms.items()}


def train(config: SemanticPretrainConfig, command: str = "") -> dict[str, Any]:
    """Train the stand-in encoder, evaluate it, write ``config.out``; returns the checkpoint's ``ff3r`` entry."""
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if config.device == "auto" else config.device))
    torch.manual_seed(config.seed)
    kwargs = standin_kwargs(config)
    encoder = build_encoder(kwargs).to(device)
    bank = SceneBank(config.scenes, config.image_size, BankContents(teacher=config.teacher, feature_fraction=0.5),
                     config.grid_patch)
    decay = [p for p in encoder.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in encoder.parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}],
                            lr=config.lr, betas=(0.9, 0.95))
    sched = make_scheduler(opt, config)  # the training stages' schedule
    gen = torch.Generator().manual_seed(config.seed)
    history: list[float] = []
    t0 = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("semantic pretraining", total=config.steps, info="")
        for step in range(config.steps):
            loss = torch.zeros((), device=device)
            for s in torch.randint(len(bank), (config.scenes_per_step,), generator=gen).tolist():
                scene = bank.scenes[s]
                views = torch.randint(len(scene), (config.views_per_scene,), generator=gen)
                images, target = scene.images[views].to(device), scene.teacher[views].to(device)
                loss = loss + dense_loss(encoder, images, target, config.grid_patch)
            loss = loss / config.scenes_per_step
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            history.append(float(loss.detach()))
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                mean = sum(history[-config.log_every:]) / len(history[-config.log_every:])
                progress.update(task, completed=step + 1, info=f"loss {mean:.4f}")
    seconds = time.perf_counter() - t0
    meta: dict[str, Any] = {
        "format": FORMAT, "model_name": MODEL_NAME, "model_kwargs": kwargs, "dense_mode": "tokens",
        "teacher": asdict(config.teacher), "classes": list(bank.classes), "steps": config.steps,
        "train_scenes": len(bank), "train_seconds": round(seconds, 1), "command": command,
        "first_loss": round(sum(history[:10]) / min(10, len(history)), 4), "final_loss": round(sum(history[-50:]) / min(50, len(history)), 4),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "stand_in": "pretrained on generated rooms to reproduce the offline teacher; not a foundation model",
    }
    if config.eval_scenes is not None:
        meta["eval"] = evaluate(encoder, config.eval_scenes, config)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": encoder.model.state_dict(), "ff3r": meta}, config.out)
    print(f"ff3r-pretrain-semantic: {config.steps} steps in {seconds:.0f} s, loss {meta['first_loss']} -> "
          f"{meta['final_loss']}" + (f", eval mIoU {meta['eval']['miou']:.3f} (teacher {meta['eval']['teacher_miou']:.3f})"
                                     if "eval" in meta else "") + f" -> {config.out}")
    return meta


def read_metadata(path: Path) -> Optional[dict[str, Any]]:
    """The ``ff3r`` entry of a checkpoint this stage wrote, or None for any other file (e.g. open_clip's own)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"semantic encoder checkpoint {path} does not exist")
    return copy.deepcopy(_metadata(str(path.resolve()), path.stat().st_mtime_ns))  # callers may change their copy


@functools.lru_cache(maxsize=8)
def _metadata(path: str, mtime_ns: int) -> Optional[dict[str, Any]]:
    # Read once per file version: TrainConfig.architecture() asks at set-up and at every checkpoint save.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    meta = ckpt.get("ff3r") if isinstance(ckpt, dict) else None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def encoder_settings(path: Path) -> dict[str, Any]:
    """``SemanticConfig`` fields that build the encoder ``path`` holds: its architecture, readout and frozen, when this
    stage wrote it; nothing for other files (they must fit the preset's architecture)."""
    meta = read_metadata(path)
    if meta is None:
        return {}
    grid_patch = meta.get("config", {}).get("grid_patch")
    return {"kind": "open_clip", "model_name": meta["model_name"], "model_kwargs": meta["model_kwargs"],
            "dense_mode": meta["dense_mode"], "freeze": True, "grid_patch": grid_patch}


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Parse ``argv`` (tyro, from :class:`SemanticPretrainConfig`) and train."""
    config = parse(SemanticPretrainConfig, "ff3r-pretrain-semantic", argv)
    return train(config, command_line("ff3r-pretrain-semantic", argv))


def entrypoint() -> None:
    """Console script ``ff3r-pretrain-semantic``."""
    run_cli("ff3r-pretrain-semantic", main)


if __name__ == "__main__":
    entrypoint()
