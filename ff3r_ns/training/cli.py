"""Command-line flags shared by ``ff3r-train`` and ``ff3r-pretrain-geometry`` (one flag per :class:`TrainConfig` field)."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional, Sequence

from ff3r_ns.training.loop import PRESETS, TrainConfig


def _doc(name: str) -> str:
    """The field docstring of ``TrainConfig.name`` (read from the source, as tyro does)."""
    import inspect

    src = inspect.getsource(TrainConfig).splitlines()
    for i, line in enumerate(src):
        if line.strip().startswith(f"{name}:") and i + 1 < len(src) and src[i + 1].strip().startswith('"""'):
            text = []
            for doc in src[i + 1 :]:
                text.append(doc.strip().strip('"'))
                if doc.rstrip().endswith('"""') and (len(text) > 1 or doc.strip().count('"""') == 2):
                    break
            return " ".join(t for t in text if t)
    return ""


def add_train_args(p: argparse.ArgumentParser, **defaults) -> None:
    """Add every :class:`TrainConfig` flag to ``p``; ``defaults`` override the dataclass defaults."""
    d = {f.name: f.default for f in fields(TrainConfig)}
    d.update(defaults)
    g = p.add_argument_group("training")
    g.add_argument("--scenes", type=Path, required=True, help=_doc("scenes"))
    g.add_argument("--out", type=Path, required=True, help=_doc("out"))
    for name, typ in (("steps", int), ("stop_after", int), ("image_size", int), ("max_views", int), ("min_views", int),
                      ("max_stride", int), ("batch_scenes", int), ("lr", float), ("layer_scale_init", float), ("geometry_lr_scale", float), ("weight_decay", float),
                      ("warmup_steps", int), ("min_lr_ratio", float), ("grad_clip", float), ("seed", int),
                      ("log_every", int), ("save_every", int)):
        g.add_argument("--" + name.replace("_", "-"), type=typ, default=d[name], help=_doc(name))
    g.add_argument("--time-limit", type=float, default=None, help=_doc("time_limit"))
    g.add_argument("--schedule", choices=("cosine", "linear", "constant"), default=d["schedule"], help=_doc("schedule"))
    g.add_argument("--resume", type=Path, nargs="?", const=Path(""), default=None,
                   help=_doc("resume") + " Without a value: the --out checkpoint.")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d["device"], help=_doc("device"))
    g.add_argument("--writer", choices=("tensorboard", "wandb", "none"), default=d["writer"], help=_doc("writer"))
    g.add_argument("--log-dir", type=Path, default=None, help=_doc("log_dir"))
    g.add_argument("--metrics-jsonl", type=Path, default=None, help=_doc("metrics_jsonl"))
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    n = p.add_argument_group("network")
    n.add_argument("--preset", choices=PRESETS, default=d["preset"], help=_doc("preset"))
    n.add_argument("--init", type=Path, default=None, help=_doc("init"))
    n.add_argument("--vggt", type=Path, default=None, help=_doc("vggt"))
    n.add_argument("--semantic-checkpoint", type=Path, default=None, help=_doc("semantic_checkpoint"))
    n.add_argument("--grad-checkpoint", action="store_true", help=_doc("grad_checkpoint"))
    n.add_argument("--feature-skip", action="store_true", help=_doc("feature_skip"))
    n.add_argument("--feature-refine-width", type=int, default=d["feature_refine_width"], help=_doc("feature_refine_width"))
    n.add_argument("--fusion-layers", type=int, nargs="*", default=None, help=_doc("fusion_layers"))
    n.add_argument("--freeze", nargs="*", default=[], metavar="MODULE", help=_doc("freeze"))


def train_config(args: argparse.Namespace, fusion: bool) -> TrainConfig:
    """:class:`TrainConfig` from parsed flags."""
    resume = args.resume
    if resume is not None and str(resume) in ("", "."):
        resume = args.out
    return TrainConfig(
        scenes=args.scenes, out=args.out, steps=args.steps, stop_after=args.stop_after, time_limit=args.time_limit, preset=args.preset, fusion=fusion,
        init=args.init, layer_scale_init=args.layer_scale_init, vggt=args.vggt, semantic_checkpoint=args.semantic_checkpoint, image_size=args.image_size,
        max_views=args.max_views, min_views=args.min_views, max_stride=args.max_stride, batch_scenes=args.batch_scenes,
        lr=args.lr, geometry_lr_scale=args.geometry_lr_scale, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, schedule=args.schedule,
        min_lr_ratio=args.min_lr_ratio, grad_clip=args.grad_clip, seed=args.seed, resume=resume, device=args.device,
        writer=args.writer, log_dir=args.log_dir, log_every=args.log_every, save_every=args.save_every,
        grad_checkpoint=args.grad_checkpoint, feature_skip=args.feature_skip, feature_refine_width=args.feature_refine_width,
        fusion_layers=None if args.fusion_layers is None else tuple(args.fusion_layers), freeze=tuple(args.freeze), progress=not args.no_progress, metrics_jsonl=args.metrics_jsonl,
    )


def command_line(prog: str, argv: Optional[Sequence[str]]) -> str:
    """The command as typed (recorded in checkpoint metadata)."""
    return shlex.join([prog, *(sys.argv[1:] if argv is None else list(argv))])


def run_cli(prog: str, main, argv: Optional[Sequence[str]] = None) -> None:
    """Run ``main(argv)``; bad input exits with a one-line message instead of a traceback."""
    try:
        main(argv)
    except (FileNotFoundError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
