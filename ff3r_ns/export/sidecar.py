"""The semantic sidecar of an exported splat: what ``f_sem_*`` features need to be queried later.

``splat.ply`` stores each Gaussian's low-dimensional feature (``F`` channels). To compare it with text,
it must be decoded to the teacher's space (``D`` channels, the network's 1x1 :class:`FeatureDecoder`) and
the text embedded in that same space. ``splat.ff3r.pt`` (next to the PLY) holds both: the decoder's
weight ``[D, F]`` and bias ``[D]``, and the teacher's class names with their embeddings ``[C, D]``. It is
a plain ``torch.save`` dict of tensors, strings and numbers (loads with ``weights_only=True``).

Text is embedded as the offline teacher does (:meth:`OfflineTeacher.encode_text`): a class name or a
simple variant ("a chair", "chairs", "a photo of a chair") maps to that class's embedding. Relevancy then
uses the *other classes* (except the ignore label 0) as the negatives of LERF's recipe, as the viewer
does (:func:`ff3r_ns.core.semantics.class_query`): the canonical phrases "object", "things", ... have no embedding in a
closed class space. So ``relevancy > 0.5`` means "closer to this class than to any other class". Other text needs a text encoder in the teacher's space (an open_clip model, for runs whose
teacher is CLIP); then LERF's canonical negatives are used.

Example:
    >>> side = SemanticSidecar.load("splat.ff3r.pt")
    >>> query = side.text_query("chairs")
    >>> rel = relevancy(side.decode(features), query)   # [N] in [0, 1]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.core.checkpoint import TeacherSettings
from ff3r_ns.core.queries import CANONICAL_NEGATIVES, TextEncoder, TextQuery, expressible
from ff3r_ns.core.semantics import class_query

SIDECAR_SUFFIX = ".ff3r.pt"
SIDECAR_FORMAT = 1


def sidecar_path(ply_path: Union[str, Path]) -> Path:
    """``dir/NAME.ply`` -> ``dir/NAME.ff3r.pt``."""
    p = Path(ply_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


class UnknownQueryError(ValueError):
    """The query text is not a known class and no text encoder was given."""


@dataclass
class SemanticSidecar:
    """Decoder and class embeddings for querying ``f_sem_*`` features.

    Attributes:
        decoder_weight: ``[D, F]`` the 1x1 decoder's weight (``decoded = f @ W.T + b``).
        decoder_bias: ``[D]``.
        classes: class names in label-id order.
        class_embeddings: ``[C, D]`` unit-norm teacher embeddings of ``classes``.
        teacher: the offline teacher's settings, or None when the embeddings came from elsewhere.
        random_decoder: True when the run used a random-init network, so the decoder (and any query
            result) is meaningless; kept so the pipeline can still be checked end to end.
        source: provenance (checkpoint path, run config, where the classes came from).
    """

    decoder_weight: Tensor
    decoder_bias: Tensor
    classes: list[str]
    class_embeddings: Tensor
    teacher: Optional[TeacherSettings] = None
    random_decoder: bool = False
    source: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w, b, e = self.decoder_weight, self.decoder_bias, self.class_embeddings
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(f"decoder weight must be [D, F] and bias [D], got {tuple(w.shape)} and {tuple(b.shape)}")
        if e.ndim != 2 or e.shape != (len(self.classes), w.shape[0]):
            raise ValueError(
                f"class_embeddings must be [{len(self.classes)} classes, D={w.shape[0]}], got {tuple(e.shape)}"
            )

    @property
    def feature_dim(self) -> int:
        return self.decoder_weight.shape[1]

    @property
    def teacher_dim(self) -> int:
        return self.decoder_weight.shape[0]

    # ------------------------------------------------------------------ I/O
    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload: dict[str, Any] = {
            "format": "ff3r-semantic-sidecar",
            "format_version": SIDECAR_FORMAT,
            "decoder_weight": self.decoder_weight.detach().float().cpu().contiguous(),
            "decoder_bias": self.decoder_bias.detach().float().cpu().contiguous(),
            "classes": list(self.classes),
            "class_embeddings": self.class_embeddings.detach().float().cpu().contiguous(),
            "teacher": asdict(self.teacher) if self.teacher is not None else None,
            "random_decoder": bool(self.random_decoder),
            "source": dict(self.source),
        }
        torch.save(payload, path)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "SemanticSidecar":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"semantic sidecar not found: {path} (ff3r-export writes it next to the PLY; pass --sidecar PATH)"
            )
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != "ff3r-semantic-sidecar":
            raise ValueError(f"{path} is not an ff3r semantic sidecar")
        if payload.get("format_version", 0) > SIDECAR_FORMAT:
            raise ValueError(f"{path} has sidecar format {payload['format_version']}; this ff3r-ns reads <= {SIDECAR_FORMAT}")
        return cls(
            decoder_weight=payload["decoder_weight"],
            decoder_bias=payload["decoder_bias"],
            classes=list(payload["classes"]),
            class_embeddings=payload["class_embeddings"],
            teacher=TeacherSettings(**payload["teacher"]) if payload.get("teacher") else None,
            random_decoder=bool(payload.get("random_decoder", False)),
            source=dict(payload.get("source", {})),
        )

    # ------------------------------------------------------------------ queries
    def decode(self, features: Tensor) -> Tensor:
        """Low-dim features ``[..., F]`` -> teacher space ``[..., D]`` (the network's 1x1 decoder)."""
        if features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"features have {features.shape[-1]} channels but the sidecar's decoder expects {self.feature_dim}"
            )
        return F.linear(features.float(), self.decoder_weight, self.decoder_bias)

    def text_query(self, text: str, text_encoder: Optional[TextEncoder] = None) -> TextQuery:
        """A :class:`TextQuery` for ``text`` in the teacher space (see the module docstring for negatives).

        Raises:
            UnknownQueryError: ``text`` names no class and ``text_encoder`` is None.
            ValueError: the text encoder's width differs from the teacher's.
        """
        q = class_query(text, self.classes, self.expressible(self.class_embeddings.float()))
        if q is not None:
            return q
        if text_encoder is None:
            raise UnknownQueryError(
                f"{text!r} is not one of the exported classes {self.classes} (or a variant such as 'a chair' / "
                "'chairs'); free text needs a text encoder in the teacher's space: pass --clip-model NAME with "
                "--clip-checkpoint PATH (or --clip-pretrained TAG)"
            )
        q = TextQuery.encode(text_encoder, text, CANONICAL_NEGATIVES)
        if q.embedding.shape[0] != self.teacher_dim:
            raise ValueError(
                f"the text encoder gives {q.embedding.shape[0]}-d embeddings but the exported features decode to "
                f"{self.teacher_dim}-d; it is not the teacher this run was trained with"
            )
        both = self.expressible(torch.cat([q.embedding[None], q.negatives]))
        return TextQuery(text=text, embedding=both[0], negatives=both[1:], temperature=q.temperature)

    def expressible(self, embeddings: Tensor) -> Tensor:
        """``[T, D]`` embeddings projected onto the decoder's output span (:func:`ff3r_ns.core.queries.expressible`)."""
        return expressible(embeddings, self.decoder_weight, self.decoder_bias)
