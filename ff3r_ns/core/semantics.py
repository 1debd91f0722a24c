"""Reading rendered semantic features: decode, segment over a class list, answer text queries.

:func:`segment_labels` (features -> class ids) and :func:`class_query` (a class name -> its query and negatives) are
the one readout every command uses: the viewer (:class:`SemanticReadout`), ``ff3r-eval`` and ``ff3r-query`` (the
exported sidecar). A reconstruction carries a low-dimensional feature per Gaussian. :class:`SemanticReadout` holds what is
needed to interpret it without the network: the network's 1x1 feature decoder (low-dim -> teacher space)
and the teacher's class embeddings with their names. Text is matched to classes as the offline teacher
does ("sofa", "a sofa", "sofas", "a photo of a sofa"); with such a closed vocabulary, the LERF negatives
("object", "stuff", ...) have no embedding, so a query's negatives are the *other* classes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ff3r_ns.core.classes import class_index, label_lut, scored_ids
from ff3r_ns.core.network.gaussian_head import FeatureDecoder
from ff3r_ns.core.network.teacher import OfflineTeacher
from ff3r_ns.core.queries import TextQuery, relevancy, segment


def segment_labels(features: Tensor, class_embeddings: Tensor) -> Tensor:
    """Label ids of teacher-space features: the most similar class (cosine), the ignore class never predicted.

    Args:
        features: ``[..., D]`` decoded features (or a teacher's).
        class_embeddings: ``[C, D]`` one embedding per label id (row :data:`~ff3r_ns.core.classes.IGNORE_ID` is
            skipped), as compared: a decoder's readout passes them through its ``expressible`` first.

    Returns:
        ``[...]`` int64 label ids in ``1..C-1``.
    """
    ids = torch.tensor(scored_ids(class_embeddings.shape[0]), dtype=torch.long, device=class_embeddings.device)
    return ids.to(features.device)[segment(features, class_embeddings[ids])]


def class_query(text: str, classes: Sequence[str], class_embeddings: Tensor) -> Optional[TextQuery]:
    """The query-negatives rule of a closed class list: ``text`` naming one of ``classes`` (as the teacher matches
    names) is queried against every *other* scored class (the ignore class is never predicted, so it is no negative;
    LERF's canonical phrases have no embedding in a closed class space).

    Args:
        text: the query ("chair", "a chair", "chairs").
        classes: class names in label-id order.
        class_embeddings: ``[C, D]`` their embeddings as compared (a decoder's ``expressible`` ones).

    Returns:
        The :class:`TextQuery`, or None when ``text`` names no class.

    Raises:
        ValueError: no other class to be the negative.
    """
    idx = class_index(text, classes)
    if idx is None:
        return None
    others = [i for i in scored_ids(len(classes)) if i != idx]
    if not others:
        raise ValueError(f"a class query needs another class as its negative; the classes are {list(classes)}")
    return TextQuery(text=text, embedding=class_embeddings[idx], negatives=class_embeddings[others])


class SemanticReadout(nn.Module):
    """Decoder + class embeddings (both saved in the model's state dict).

    Args:
        feature_dim: rendered feature channels ``F``.
        teacher_dim: teacher feature width ``D``.
        classes: class names in label-id order; id 0 is "ignore" (whatever it is called) and never predicted.

    Example:
        >>> readout = SemanticReadout(8, 16, ["unlabeled", "wall", "chair"])
        >>> readout.segment(torch.randn(4, 4, 8)).shape
        torch.Size([4, 4])
    """

    def __init__(self, feature_dim: int, teacher_dim: int, classes: Sequence[str]) -> None:
        super().__init__()
        if len(classes) < 2:
            raise ValueError("SemanticReadout needs the ignore class 0 plus at least one class")
        self.classes = list(classes)
        self.decoder = FeatureDecoder(feature_dim, teacher_dim)
        self.register_buffer("class_embeddings", torch.zeros(len(classes), teacher_dim))

    def set_from(self, decoder: FeatureDecoder, teacher: OfflineTeacher) -> None:
        """Copy the network's decoder weights and the teacher's class embeddings (same class order)."""
        if teacher.classes != self.classes:
            raise ValueError(f"teacher classes {teacher.classes} differ from {self.classes}")
        self.decoder.load_state_dict(decoder.state_dict())
        self.class_embeddings.copy_(teacher.class_embeddings().to(self.class_embeddings))

    def decode(self, features: Tensor) -> Tensor:
        """``[..., F]`` -> ``[..., D]``."""
        return self.decoder(features)

    def expressible_embeddings(self) -> Tensor:
        """``[C, D]`` the class embeddings projected onto the decoder's output span: what decoded features are
        compared with (see :func:`ff3r_ns.core.queries.expressible` for why)."""
        return self.decoder.expressible(self.class_embeddings)

    def segment(self, features: Tensor) -> Tensor:
        """``[..., F]`` -> ``[...]`` class ids in ``1..C-1`` (:func:`segment_labels` on the expressible class embeddings)."""
        return segment_labels(self.decode(features), self.expressible_embeddings())

    def query(self, text: str) -> TextQuery:
        """:func:`class_query` for ``text``; raises ``KeyError`` naming the known classes when it names none."""
        q = class_query(text, self.classes, self.expressible_embeddings())
        if q is None:
            raise KeyError(f"{text!r} is not one of the classes {self.classes}")
        return q

    def relevancy(self, features: Tensor, text: str) -> Tensor:
        """``[..., F]`` -> ``[...]`` in [0, 1] (LERF-style, negatives = the other classes)."""
        q = self.query(text)
        return relevancy(self.decode(features), q)


def to_teacher_labels(labels: Tensor, label_classes: Sequence[str], teacher_classes: Sequence[str]) -> Tensor:
    """Label maps in a dataset's numbering -> the teacher's (:func:`ff3r_ns.core.classes.label_lut`: id 0 stays 0, the
    others by class *name*; a name the teacher does not know, and an id past the dataset's list, become 0 = ignore).

    Args:
        labels: ``[...]`` int class ids in the dataset's numbering.
        label_classes: the dataset's class names in id order.
        teacher_classes: the teacher's class names in id order.
    """
    lut = torch.tensor([0 if t is None else t for t in label_lut(label_classes, teacher_classes)] or [0], dtype=torch.long)
    return lut.to(labels.device)[labels.long().clamp(0, lut.numel() - 1)]


@torch.no_grad()
def teacher_targets(
    teacher: OfflineTeacher, labels: Tensor, label_classes: Sequence[str], size: tuple[int, int]
) -> Tensor:
    """The offline teacher's features of a dataset's label maps, as refinement's feature loss compares them.

    Labels are mapped by class *name* from the dataset's list to the teacher's (a name the teacher does not know
    becomes its id 0); features are computed at full resolution, area-resized to ``size`` and re-normalised, as
    in training.

    Args:
        teacher: the teacher the network was trained against.
        labels: ``[S, H, W]`` int class ids in the dataset's numbering.
        label_classes: the dataset's class names in id order.
        size: ``(h, w)`` of the targets.

    Returns:
        ``[S, h, w, D]`` unit-norm features (view ``i`` uses the teacher's view id ``i``).
    """
    mapped = to_teacher_labels(labels, label_classes, teacher.classes)
    s, h, w = labels.shape
    out = []
    offsets = teacher.iter_view_offsets(range(s), h, w) if teacher.noise > 0 or teacher.view_bias > 0 else None
    for i in range(s):  # one view at a time: [D, H, W] at full resolution is the large tensor
        off = next(offsets)[None] if offsets is not None else None
        f = teacher.features(mapped[i : i + 1], torch.tensor([i]), offsets=off)
        out.append(torch.nn.functional.interpolate(f, size=size, mode="area"))
    return torch.nn.functional.normalize(torch.cat(out), dim=1).permute(0, 2, 3, 1).contiguous()


@torch.no_grad()
def encoder_targets(encoder: nn.Module, images: Tensor, size: tuple[int, int], chunk: int = 8) -> Tensor:
    """Dense features of a pretrained semantic encoder (e.g. MaskCLIP) as refinement targets.

    Args:
        encoder: ``images [S, 3, H, W] -> [S, D, gh, gw]`` (:class:`~ff3r_ns.core.network.semantic.SemanticEncoder`).
        images: ``[S, H, W, 3]`` in [0, 1].
        size: ``(h, w)`` of the targets.
        chunk: views per encoder call.

    Returns:
        ``[S, h, w, D]`` unit-norm features (bilinearly upsampled from the encoder's patch grid).
    """
    out = []
    for start in range(0, images.shape[0], chunk):
        f = encoder(images[start : start + chunk].permute(0, 3, 1, 2).float())
        out.append(torch.nn.functional.interpolate(f.float(), size=size, mode="bilinear", align_corners=False))
    return torch.nn.functional.normalize(torch.cat(out), dim=1).permute(0, 2, 3, 1).contiguous()
