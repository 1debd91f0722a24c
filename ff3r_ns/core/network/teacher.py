"""An offline semantic teacher for generated scenes: per-pixel class embeddings with controllable flaws.

A real 2D teacher (CLIP, LSeg, DINO) gives features that are blurry at boundaries and inconsistent
across views: the same chair gets a slightly different feature in each image. FF3R's
geometry-guided feature warping exists to fix exactly that. For scenes whose labels we know, this
teacher imitates such a model without weights or downloads:

* each class has a unit embedding (seeded and mutually orthogonal when ``num_classes <= dim``, or the
  text embeddings of the class names when a text encoder is given);
* ``blur``: Gaussian blur (sigma in pixels) of the embedding map -- soft boundaries;
* ``noise``: per-pixel Gaussian noise of expected norm ``noise``, different for each view;
* ``view_bias``: one offset vector per view of norm ~``view_bias`` -- view-dependent inconsistency;
* the result is L2-normalised per pixel (teachers are compared by cosine).

Everything is deterministic for a given ``seed`` and view id.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ff3r_ns.core.classes import class_index

TextEncoder = Callable[[Sequence[str]], Tensor]


class OfflineTeacher:
    """Per-pixel class embeddings with controllable noise, blur and per-view bias.

    Args:
        classes: class names in label-id order (label ``i`` is ``classes[i]``).
        dim: feature dimension ``D``.
        noise: expected norm of the per-pixel noise (0 = none).
        blur: Gaussian blur sigma in pixels (0 = none).
        view_bias: expected norm of the per-view offset (0 = none).
        seed: seed for class embeddings, noise and biases.
        text_encoder: optional callable ``texts -> [T, D]``; then class embeddings are the (normalised)
            text embeddings of the class names, and unknown text can be encoded.

    Example:
        >>> teacher = OfflineTeacher(["unlabeled", "wall", "chair"], dim=8, noise=0.1, blur=1.0, view_bias=0.1, seed=0)
        >>> labels = torch.randint(0, 3, (2, 16, 16))
        >>> teacher.features(labels, torch.tensor([0, 1])).shape
        torch.Size([2, 8, 16, 16])
        >>> bool((teacher.encode_text(["chairs"]) == teacher.class_embeddings()[2]).all())
        True
    """

    # TeacherSettings' fields (core.checkpoint builds it from them) plus the class list and a text encoder.
    def __init__(
        self, classes: list[str], dim: int, noise: float = 0.0, blur: float = 0.0, view_bias: float = 0.0, seed: int = 0,
        text_encoder: Optional[TextEncoder] = None,
    ) -> None:
        if not classes:
            raise ValueError("OfflineTeacher needs at least one class name")
        if min(noise, blur, view_bias) < 0:
            raise ValueError("OfflineTeacher: noise, blur and view_bias must be >= 0")
        self.classes = list(classes)
        self.dim, self.noise, self.blur, self.view_bias, self.seed = dim, noise, blur, view_bias, seed
        self.text_encoder = text_encoder
        self._embeddings = self._make_embeddings()

    def _make_embeddings(self) -> Tensor:
        if self.text_encoder is not None:
            with torch.no_grad():
                emb = self.text_encoder(self.classes).float().cpu()
            if emb.shape != (len(self.classes), self.dim):
                raise ValueError(f"text encoder gave {tuple(emb.shape)}, expected {(len(self.classes), self.dim)}")
            return F.normalize(emb, dim=-1)
        g = torch.Generator().manual_seed(self.seed)
        raw = torch.randn(self.dim, len(self.classes), generator=g, dtype=torch.float64)
        if len(self.classes) <= self.dim:
            q, r = torch.linalg.qr(raw)  # orthonormal columns: cosine 0 between classes
            q = q * torch.sign(torch.diagonal(r))[None]
            return q.T.float().contiguous()
        return F.normalize(raw.T, dim=-1).float()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_embeddings(self) -> Tensor:
        """``[num_classes, D]`` unit vectors."""
        return self._embeddings.clone()

    def _view_generator(self, view_id: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + int(view_id) + 1)

    def _blur(self, x: Tensor) -> Tensor:
        radius = int(math.ceil(3 * self.blur))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-0.5 * (t / self.blur) ** 2)
        k = k / k.sum()
        c = x.shape[1]
        pad_mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=pad_mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(F.pad(x, (0, 0, radius, radius), mode=pad_mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def features(self, labels: Tensor, view_ids: Tensor, offsets: Optional[Tensor] = None) -> Tensor:
        """Teacher features ``[S, D, H, W]`` (unit norm per pixel) for label maps ``[S, H, W]`` of views ``view_ids [S]``;
        ``offsets``: those views' :meth:`view_offsets`, when the caller drew them ahead."""
        if labels.ndim != 3 or labels.dtype not in (torch.int64, torch.int32, torch.uint8, torch.int16):
            raise ValueError(f"labels must be an integer tensor [S, H, W], got {labels.dtype} {tuple(labels.shape)}")
        if view_ids.shape != labels.shape[:1]:
            raise ValueError(f"view_ids must be [S] = {labels.shape[0]}, got {tuple(view_ids.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
        s, h, w = labels.shape
        emb = self._embeddings.to(labels.device)
        x = emb[labels.long()].permute(0, 3, 1, 2)  # [S, D, H, W]
        if self.blur > 0:
            x = self._blur(x)
        if self.noise > 0 or self.view_bias > 0:
            x = x + (self.view_offsets(view_ids.tolist(), h, w) if offsets is None else offsets).to(x)
        return F.normalize(x, dim=1)

    def view_offset(self, view_id: int, h: int, w: int) -> Tensor:
        """``[D, H, W]``: view ``view_id``'s bias plus per-pixel noise, from its own CPU generator (so a view's
        flaws do not depend on which other views are computed with it, nor on the device)."""
        g = self._view_generator(view_id)
        bias = torch.randn(self.dim, 1, 1, generator=g) * (self.view_bias / math.sqrt(self.dim))
        return bias + torch.randn(self.dim, h, w, generator=g) * (self.noise / math.sqrt(self.dim))

    def view_offsets(self, view_ids: Sequence[int], h: int, w: int) -> Tensor:
        """``[S, D, H, W]``: :meth:`view_offset` of each view (:meth:`iter_view_offsets`, stacked)."""
        if not view_ids:
            return torch.zeros(0, self.dim, h, w)
        return torch.stack(list(self.iter_view_offsets(view_ids, h, w)))

    def iter_view_offsets(self, view_ids: Sequence[int], h: int, w: int) -> Iterator[Tensor]:
        """:meth:`view_offset` of each view in order, drawn ahead in threads (a seeded ``randn`` runs on one core: for
        128 views at 256 px, one after the other, it was most of ``ns-train ff3r``'s set-up on a GPU machine), at most
        two per core ahead of the consumer (memory stays bounded for long sequences)."""
        workers = max(1, min(len(view_ids), os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            pending: deque[Future[Tensor]] = deque()
            todo = iter(view_ids)
            for v in itertools.islice(todo, 2 * workers):
                pending.append(pool.submit(self.view_offset, v, h, w))
            while pending:
                out = pending.popleft().result()
                for v in itertools.islice(todo, 1):
                    pending.append(pool.submit(self.view_offset, v, h, w))
                yield out

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """``[T, D]``: class names and simple variants ("a chair", "chairs", "a photo of a chair") map to
        their class embedding; other text goes through the text encoder, if there is one."""
        out = []
        for text in texts:
            idx = class_index(text, self.classes)
            if idx is not None:
                out.append(self._embeddings[idx])
            elif self.text_encoder is not None:
                with torch.no_grad():
                    out.append(F.normalize(self.text_encoder([text]).float().cpu()[0], dim=-1))
            else:
                raise KeyError(
                    f"OfflineTeacher: {text!r} is not one of the classes {self.classes} and no text encoder was given"
                )
        return torch.stack(out) if out else torch.zeros(0, self.dim)
