"""``ff3r-export`` (splat PLY with semantic features + sidecar) and ``ff3r-query`` (text -> Gaussian subset).

Usage::

    ff3r-export --load-config outputs/scene/ff3r/RUN/config.yml --output-dir export/
    # -> export/splat.ply (standard 3DGS properties + f_sem_*), export/splat.ff3r.pt (decoder, classes)
    ff3r-query export/splat.ply "chairs" --threshold 0.5 --out export/chairs.ply

Where the sidecar's pieces come from:

* the **feature decoder and class embeddings** the model saved with its Gaussians (``model.semantics``,
  copied from the network and teacher that made them), so ``ff3r-query`` gives the viewer's relevancy;
* for a model without them: the decoder of the run's network checkpoint (``network.weights``), and the
  checkpoint's teacher (``FF3RCheckpoint.teacher`` and ``classes``); a checkpoint without a teacher falls
  back to ``TeacherSettings(dim=heads.teacher_dim)`` over the run's classes (``CLASSES`` of the generator
  by default), the setting ``ff3r-train`` uses by default. ``source["classes"]`` records which;
* a run made with ``network.random-init True`` has no trained decoder: its sidecar says
  ``random_decoder=True`` (queries then only check the pipeline; their answers mean nothing).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Sequence

import numpy as np
import torch
import tyro

from ff3r_ns.cli import parse
from ff3r_ns.core.checkpoint import TeacherSettings
from ff3r_ns.core.queries import TextEncoder, relevancy
from ff3r_ns.core.reconstruct import NetworkSettings
from ff3r_ns.export.ply import LOW_OPACITY_LOGIT, PlyWriteStats, SplatArrays, read_splat_ply, write_splat_ply
from ff3r_ns.export.sidecar import SemanticSidecar, UnknownQueryError, sidecar_path


# ---------------------------------------------------------------------------------------------- export
def sidecar_for_network(
    settings: NetworkSettings, classes: Optional[Sequence[str]] = None, random_seed: int = 0
) -> SemanticSidecar:
    """The decoder and class embeddings from a run's network settings (see the module docstring).

    Args:
        settings: the run's network settings.
        classes: class names to use when the checkpoint has none (default: the generator's ``CLASSES``).
        random_seed: seed of the stand-in decoder of a random-init run.

    Raises:
        ValueError: the checkpoint's decoder or teacher does not match ``settings.architecture``.
    """
    from ff3r_ns.core.network.gaussian_head import FeatureDecoder

    heads = settings.architecture.heads
    f_dim, d_dim = heads.feature_dim, heads.teacher_dim
    if settings.weights is not None:
        from ff3r_ns.core.checkpoint import load_checkpoint

        ckpt = load_checkpoint(settings.weights)
        weight, bias = ckpt.network.get("feature_decoder.proj.weight"), ckpt.network.get("feature_decoder.proj.bias")
        if weight is None or bias is None:
            raise ValueError(f"{settings.weights} has no feature_decoder.proj.weight/bias; is it an FF3R checkpoint?")
        if tuple(weight.shape) != (d_dim, f_dim):
            raise ValueError(
                f"{settings.weights}: feature decoder is {tuple(weight.shape)} but the run's network has "
                f"heads.feature_dim={f_dim}, heads.teacher_dim={d_dim}"
            )
        random_decoder, network_source = False, str(settings.weights)
    elif settings.random_init:
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
            torch.manual_seed(random_seed)
            dec = FeatureDecoder(f_dim, d_dim)
        weight, bias = dec.proj.weight.detach(), dec.proj.bias.detach()
        random_decoder, network_source = True, f"random-init (stand-in decoder, seed {random_seed}); queries are meaningless"
    else:
        raise ValueError("the run has neither network.weights nor network.random-init; cannot find its feature decoder")
    teacher, names, classes_source = _teacher_and_classes(settings, classes)
    return SemanticSidecar(
        decoder_weight=weight.float(), decoder_bias=bias.float(), classes=names,
        class_embeddings=teacher.build(names).class_embeddings(), teacher=teacher, random_decoder=random_decoder,
        source={"network": network_source, "classes": classes_source},
    )  # fmt: skip


def _teacher_and_classes(
    settings: NetworkSettings, classes: Optional[Sequence[str]]
) -> tuple[TeacherSettings, list[str], str]:
    """The checkpoint's teacher and classes, else ``TeacherSettings(dim=teacher_dim)`` over ``classes``."""
    d_dim = settings.architecture.heads.teacher_dim
    teacher: Optional[TeacherSettings] = None
    names: list[str] = []
    if settings.weights is not None:
        from ff3r_ns.core.checkpoint import load_checkpoint

        ckpt = load_checkpoint(settings.weights)
        teacher, names = ckpt.teacher, list(ckpt.classes)
    source = "checkpoint"
    if teacher is None or not names:
        from ff3r_ns.data.furniture import CLASSES

        teacher = teacher or TeacherSettings(dim=d_dim)
        names = names or list(classes or CLASSES)
        source = "default: TeacherSettings(dim=heads.teacher_dim) over " + ("the run's classes" if classes else "CLASSES")
    if teacher.dim != d_dim:
        raise ValueError(f"teacher dim {teacher.dim} != the network's heads.teacher_dim {d_dim}")
    return teacher, names, source


def sidecar_from_model(model: torch.nn.Module) -> SemanticSidecar:
    """The sidecar of a loaded ``FF3RModel``.

    Prefers the decoder and class embeddings the model saved with its Gaussians (``model.semantics``, copied
    from the network that made them, so ``ff3r-query`` agrees with the viewer's relevancy); falls back to
    :func:`sidecar_for_network` for models without them.
    """
    settings: NetworkSettings = model.config.network
    classes = list(getattr(model.config, "classes", ()) or ())
    readout = getattr(model, "semantics", None)
    if readout is None or not bool(readout.class_embeddings.abs().sum() > 0):
        return sidecar_for_network(settings, classes or None)
    teacher, _, _ = _teacher_and_classes(settings, readout.classes)
    random_decoder = settings.weights is None
    return SemanticSidecar(
        decoder_weight=readout.decoder.proj.weight.detach().float().cpu(),
        decoder_bias=readout.decoder.proj.bias.detach().float().cpu(),
        classes=list(readout.classes),
        class_embeddings=readout.class_embeddings.detach().float().cpu(),
        teacher=teacher,
        random_decoder=random_decoder,
        source={
            "network": "random-init network of the run; queries are meaningless" if random_decoder else str(settings.weights),
            "classes": "the run's model (semantics.class_embeddings)",
        },
    )


def splat_from_model(model: torch.nn.Module) -> SplatArrays:
    """The stored Gaussians of an ``FF3RModel`` (``gauss_params`` are already logit / log / wxyz)."""
    p = model.gauss_params

    def np32(name: str) -> np.ndarray:
        return p[name].detach().float().cpu().numpy()

    return SplatArrays(
        means=np32("means"), sh_dc=np32("features_dc"), sh_rest=np32("features_rest"),
        opacity_logits=np32("opacities").reshape(-1), log_scales=np32("scales"), quats=np32("quats"),
        sem_features=np32("sem_features") if p["sem_features"].shape[-1] > 0 else None,
    )


@dataclass(frozen=True)
class ExportResult:
    """Files written by :func:`export_model`.

    Attributes:
        ply: the PLY write (path and counts).
        sidecar: the sidecar path.
    """

    ply: PlyWriteStats
    sidecar: Path


def export_model(
    model: torch.nn.Module, output_dir: Path, filename: str = "splat.ply", keep_low_opacity: bool = False
) -> ExportResult:
    """Write ``output_dir/filename`` (3DGS + ``f_sem_*``) and its sidecar for a loaded ``FF3RModel``."""
    from ff3r_ns.nerfstudio.model import FF3RModel

    if not isinstance(model, FF3RModel):
        raise TypeError(f"ff3r-export needs an ff3r run (FF3RModel), got {type(model).__name__}; use ns-export")
    if not model.reconstructed:
        raise ValueError("the run's model holds no Gaussians (was the checkpoint saved after reconstruction?)")
    sidecar = sidecar_from_model(model)
    ply_path = Path(output_dir) / filename
    stats = write_splat_ply(
        ply_path, splat_from_model(model), min_opacity_logit=None if keep_low_opacity else LOW_OPACITY_LOGIT,
        comments=["Generated by ff3r-export", f"ff3r sidecar {sidecar_path(ply_path).name}"],
    )
    return ExportResult(stats, sidecar.save(sidecar_path(ply_path)))


def _fail(prog: str, err: Exception) -> "SystemExit":
    return SystemExit(f"{prog}: error: {err}")


@dataclass
class ExportCommand:
    """Export an ff3r run as a 3DGS PLY with semantic features."""

    load_config: Path
    """The run's config.yml."""
    output_dir: Path
    """Folder for the PLY and its sidecar."""
    output_filename: str = "splat.ply"
    """PLY name."""
    keep_low_opacity: bool = False
    """Also write Gaussians below opacity 1/255 (ns-export drops them)."""


def entrypoint_export(argv: Optional[Sequence[str]] = None) -> None:
    """``ff3r-export`` (flags: :class:`ExportCommand`)."""
    args = parse(ExportCommand, "ff3r-export", argv)
    if not args.load_config.is_file():
        raise _fail("ff3r-export", FileNotFoundError(f"{args.load_config}: no such config file"))
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(args.load_config, test_mode="inference")
    try:
        result = export_model(pipeline.model, args.output_dir, args.output_filename, args.keep_low_opacity)
    except (TypeError, ValueError) as err:
        raise _fail("ff3r-export", err) from None
    s = result.ply
    print(f"wrote {s.path} ({s.written:,} Gaussians; dropped {s.dropped_nonfinite} non-finite, "
          f"{s.dropped_low_opacity} below opacity 1/255) and {result.sidecar}")  # fmt: skip


# ---------------------------------------------------------------------------------------------- query
@dataclass(frozen=True)
class QueryResult:
    """Outcome of :func:`query_ply`.

    Attributes:
        matched: Gaussians with relevancy above the threshold.
        total: Gaussians in the file.
        relevancy: ``[N]`` relevancy of every Gaussian.
        out: the subset PLY written, or None when nothing matched.
    """

    matched: int
    total: int
    relevancy: torch.Tensor
    out: Optional[Path]


def default_subset_path(ply: Path, text: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "query"
    return ply.with_name(f"{ply.stem}_{slug}.ply")


def query_ply(
    ply: Path,
    text: str,
    threshold: float = 0.5,
    out: Optional[Path] = None,
    sidecar: Optional[Path] = None,
    text_encoder: Optional[TextEncoder] = None,
) -> QueryResult:
    """Per-Gaussian LERF relevancy of ``text`` in an exported splat; write the matching subset.

    Args:
        ply: a PLY written by ``ff3r-export`` (with ``f_sem_*``).
        text: a class name or variant, or free text when ``text_encoder`` is given.
        threshold: keep Gaussians with relevancy ``> threshold``.
        out: subset PLY path (default ``NAME_<text>.ply`` next to ``ply``); its sidecar is copied next to it.
        sidecar: the sidecar (default ``NAME.ff3r.pt`` next to ``ply``).
        text_encoder: optional encoder in the teacher's space for free text.

    Returns:
        :class:`QueryResult`.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"--threshold must be in [0, 1), got {threshold}")
    ply = Path(ply)
    splat = read_splat_ply(ply)
    if splat.sem_features is None:
        raise ValueError(f"{ply} has no f_sem_* properties; export it with ff3r-export")
    side_path = Path(sidecar) if sidecar is not None else sidecar_path(ply)
    side = SemanticSidecar.load(side_path)
    query = side.text_query(text, text_encoder)
    decoded = side.decode(torch.from_numpy(splat.sem_features))
    rel = relevancy(decoded, query)
    mask = rel > threshold
    matched = int(mask.sum())
    target: Optional[Path] = None
    if matched:
        target = Path(out) if out is not None else default_subset_path(ply, text)
        write_splat_ply(target, splat.select(mask.numpy()), comments=[f"ff3r-query {text!r} relevancy > {threshold}"])
        if sidecar_path(target).resolve() != side_path.resolve():
            shutil.copyfile(side_path, sidecar_path(target))  # the subset stays queryable
    return QueryResult(matched, splat.num, rel, target)


def _clip_encoder(model: str, checkpoint: Optional[str], pretrained: Optional[str]) -> TextEncoder:
    from ff3r_ns.core.network.config import SemanticConfig
    from ff3r_ns.core.network.semantic import OpenCLIPEncoder

    return OpenCLIPEncoder.from_config(SemanticConfig(kind="open_clip", model_name=model, checkpoint=checkpoint, pretrained=pretrained))


@dataclass
class QueryCommand:
    """Select the Gaussians of an ff3r-export PLY that match a text query."""

    ply: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="PLY")]
    """PLY written by ff3r-export."""
    text: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="TEXT")]
    """Query, e.g. "chair", "a sofa" (a class name unless --clip-model is given)."""
    threshold: float = 0.5
    """Relevancy threshold in [0, 1)."""
    out: Optional[Path] = None
    """Subset PLY (default NAME_<text>.ply next to the input)."""
    sidecar: Optional[Path] = None
    """Sidecar file (default NAME.ff3r.pt next to the PLY)."""
    clip_model: Optional[str] = None
    """open_clip model for free-text queries (teacher must be that CLIP)."""
    clip_checkpoint: Optional[str] = None
    """Local open_clip weights for --clip-model."""
    clip_pretrained: Optional[str] = None
    """open_clip pretrained tag for --clip-model (downloads)."""


def entrypoint_query(argv: Optional[Sequence[str]] = None) -> None:
    """``ff3r-query`` (flags: :class:`QueryCommand`)."""
    args = parse(QueryCommand, "ff3r-query", argv)
    try:
        encoder = _clip_encoder(args.clip_model, args.clip_checkpoint, args.clip_pretrained) if args.clip_model else None
        result = query_ply(args.ply, args.text, args.threshold, args.out, args.sidecar, encoder)
    except (FileNotFoundError, ValueError, UnknownQueryError) as err:
        raise _fail("ff3r-query", err) from None
    side = SemanticSidecar.load(args.sidecar or sidecar_path(args.ply))
    note = " [random-init network: the result is meaningless]" if side.random_decoder else ""
    print(f"{result.matched:,} of {result.total:,} Gaussians match {args.text!r} (relevancy > {args.threshold}){note}")
    print(f"wrote {result.out}" if result.out else "nothing matched; no PLY written")
