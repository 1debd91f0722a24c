"""Open-vocabulary queries on rendered feature maps and on per-Gaussian features.

Text goes through any :class:`TextEncoder` (an object with ``encode_text(list[str]) -> [T, D]``;
the open_clip and offline-teacher encoders in ``ff3r_ns.core.network`` provide it). Features must
live in the same ``D``-dimensional space as the text embeddings (i.e. after the feature decoder).
Everything is compared by cosine similarity: features and embeddings are L2-normalised first.

Rendered features reach the text space through a low-rank affine decoder (``F`` -> ``D`` with ``F < D``), so a
decoded feature can only lie in that decoder's ``F + 1``-dimensional output span. A class embedding that the span
represents poorly would then score low everywhere and lose every mixed (boundary) pixel to a better represented
class; :func:`expressible` projects embeddings onto the span first, so each class is compared with what the decoder
can actually produce.

Feature layout is explicit: ``channel_dim=-1`` (default) for channels-last ``[..., H, W, D]`` or
per-Gaussian ``[N, D]``; ``channel_dim=0`` for a channels-first map ``[D, H, W]``.

Relevancy follows LERF (Kerr et al. 2023, https://arxiv.org/abs/2303.09553, section 3.4): for a
query ``q`` and canonical negatives ``n_j`` ("object", "things", "stuff", "texture"),
``relevancy = min_j softmax([cos(f, q), cos(f, n_j)] / tau)[0]`` with ``tau = 0.1`` (LERF's
``softmax(10 * sims)``). 0.5 means "as close to the query as to the closest negative".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

CANONICAL_NEGATIVES: tuple[str, ...] = ("object", "things", "stuff", "texture")
"""LERF's canonical phrases; a query must beat each of them to be relevant."""

DEFAULT_TEMPERATURE = 0.1


@runtime_checkable
class TextEncoder(Protocol):
    """Anything that embeds strings: ``encode_text(texts) -> [len(texts), D]``."""

    def encode_text(self, texts: list[str]) -> Tensor: ...


def encode_texts(encoder: TextEncoder, texts: Sequence[str]) -> Tensor:
    """Embed ``texts`` and L2-normalise: ``[T, D]`` float32, detached.

    Raises:
        ValueError: on an empty list or an encoder that returns the wrong shape.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError("encode_texts needs at least one string")
    with torch.no_grad():
        emb = encoder.encode_text(texts)
    if not isinstance(emb, Tensor) or emb.ndim != 2 or emb.shape[0] != len(texts):
        shape = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
        raise ValueError(f"{type(encoder).__name__}.encode_text returned {shape}, expected [{len(texts)}, D]")
    return F.normalize(emb.detach().float(), dim=-1)


@dataclass(frozen=True)
class TextQuery:
    """One text query with its LERF negatives, ready to score features.

    Attributes:
        text: the query string.
        embedding: ``[D]`` unit-norm query embedding.
        negatives: ``[M, D]`` unit-norm embeddings of the canonical negatives.
        temperature: softmax temperature ``tau``.

    Example:
        >>> q = TextQuery.encode(encoder, "chair")
        >>> rel = relevancy(rendered_features, q)        # [H, W] in [0, 1]
        >>> mask = select_gaussians(gaussians.features, q, threshold=0.6)
    """

    text: str
    embedding: Tensor
    negatives: Tensor
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        if self.embedding.ndim != 1:
            raise ValueError(f"TextQuery.embedding must be [D], got {tuple(self.embedding.shape)}")
        m = self.negatives
        if m.ndim != 2 or m.shape[1] != self.embedding.shape[0] or m.shape[0] == 0:
            raise ValueError(
                f"TextQuery.negatives must be [M >= 1, {self.embedding.shape[0]}], got {tuple(self.negatives.shape)}"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    @classmethod
    def encode(
        cls,
        encoder: TextEncoder,
        text: str,
        negatives: Sequence[str] = CANONICAL_NEGATIVES,
        temperature: float = DEFAULT_TEMPERATURE,
    ) -> "TextQuery":
        """Embed ``text`` and ``negatives`` with one ``encode_text`` call."""
        emb = encode_texts(encoder, [text, *negatives])
        return cls(text=text, embedding=emb[0], negatives=emb[1:], temperature=temperature)


def _channels_last(features: Tensor, channel_dim: int, dim: int) -> Tensor:
    if features.ndim == 0:
        raise ValueError("features must have a channel dimension")
    f = features.movedim(channel_dim, -1)
    if f.shape[-1] != dim:
        raise ValueError(
            f"feature width {f.shape[-1]} (dim {channel_dim} of shape {tuple(features.shape)}) does not match the "
            f"text embedding width {dim}; decode rendered features to the teacher space first, or pass channel_dim"
        )
    return F.normalize(f.float(), dim=-1)


def cosine_similarity(features: Tensor, embeddings: Tensor, channel_dim: int = -1) -> Tensor:
    """Cosine similarity of every feature vector with every embedding.

    Args:
        features: feature map or set, channel axis at ``channel_dim``.
        embeddings: ``[T, D]``.

    Returns:
        ``[..., T]``: the non-channel axes of ``features`` (in order), then one entry per embedding.
    """
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [T, D], got {tuple(embeddings.shape)}")
    f = _channels_last(features, channel_dim, embeddings.shape[1])
    e = F.normalize(embeddings.to(device=f.device, dtype=f.dtype), dim=-1)
    return f @ e.T


def expressible(embeddings: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """Embeddings as an affine decoder ``x = W f + b`` can express them: projected onto the span of its outputs.

    For a decoded ``x`` (which lies in the span) and the projection ``P``, ``cos(x, P e) = cos(x, e) / |P e|``: the
    readout divides each class's similarity by how much of the class the decoder can represent at all. A decoder
    whose outputs span the whole space (``F + 1 >= D``) leaves the embeddings unchanged (up to normalisation).

    Args:
        embeddings: ``[T, D]`` text or class embeddings.
        weight: ``[D, F]`` the decoder's linear map.
        bias: ``[D]`` its offset, or None for a linear decoder.

    Returns:
        ``[T, D]`` unit-norm projected embeddings (an embedding orthogonal to the span becomes ~0 and scores 0).

    Example:
        >>> emb = expressible(class_embeddings, decoder.proj.weight, decoder.proj.bias)
        >>> labels = segment(decoder(rendered), emb)
    """
    if weight.ndim != 2 or embeddings.ndim != 2 or weight.shape[0] != embeddings.shape[1]:
        raise ValueError(f"expressible needs embeddings [T, D] and weight [D, F], got {tuple(embeddings.shape)} and {tuple(weight.shape)}")
    basis = weight.detach().double()
    if bias is not None:
        basis = torch.cat([basis, bias.detach().double().reshape(-1, 1)], dim=1)  # [D, F + 1]
    # Orthonormal basis of the column span; rank from the singular values (a dead channel adds no direction).
    u, s, _ = torch.linalg.svd(basis, full_matrices=False)
    rank = int((s > s.max() * 1e-6).sum()) if s.numel() and s.max() > 0 else 0
    q = u[:, :rank].to(embeddings.device)
    e = embeddings.detach().double()
    return F.normalize((e @ q) @ q.T, dim=-1).to(embeddings.dtype if embeddings.is_floating_point() else torch.float32)


def relevancy(features: Tensor, query: TextQuery, channel_dim: int = -1) -> Tensor:
    """LERF relevancy of ``query`` for every feature vector.

    Args:
        features: ``[..., D]`` (``channel_dim=-1``), ``[D, H, W]`` (``channel_dim=0``), or ``[N, D]``.
        query: a :class:`TextQuery`.

    Returns:
        Relevancy in ``[0, 1]`` with the non-channel shape of ``features`` (``[H, W]``, ``[N]``, ...).
    """
    both = torch.cat([query.embedding[None], query.negatives])
    sims = cosine_similarity(features, both, channel_dim)  # [..., 1 + M]
    pos, neg = sims[..., :1], sims[..., 1:]
    # Two-way softmax [pos, neg_j][0] == sigmoid((pos - neg_j) / tau); min over negatives = worst case.
    return torch.sigmoid((pos - neg) / query.temperature).amin(dim=-1)


def select_gaussians(features: Tensor, query: TextQuery, threshold: float = 0.5) -> Tensor:
    """Boolean mask of the Gaussians whose features are relevant to ``query``.

    Args:
        features: ``[N, D]`` per-Gaussian features in the text embedding space.
        query: a :class:`TextQuery`.
        threshold: keep Gaussians with relevancy ``> threshold`` (0.5: closer to the query than to
            every canonical negative, at any temperature).

    Returns:
        ``[N]`` bool mask.
    """
    if features.ndim != 2:
        raise ValueError(f"select_gaussians expects per-Gaussian features [N, D], got {tuple(features.shape)}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    return relevancy(features, query) > threshold


def segment(features: Tensor, class_embeddings: Tensor, channel_dim: int = -1, label_offset: int = 0) -> Tensor:
    """Label every feature vector with its most similar class (argmax of cosine similarity).

    Args:
        features: feature map or set, channel axis at ``channel_dim``.
        class_embeddings: ``[K, D]`` one embedding per class, e.g. from :func:`encode_texts`.
        label_offset: added to the class index; the protocol uses 1 because label 0 is "ignore"
            (class ``k`` of ``["wall", ..., "other"]`` becomes label ``k + 1``).

    Returns:
        int64 labels with the non-channel shape of ``features``.
    """
    return cosine_similarity(features, class_embeddings, channel_dim).argmax(dim=-1) + label_offset
