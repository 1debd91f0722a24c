"""Which frames are context and which are targets in the evaluation protocol.

LSM's ScanNet protocol (https://arxiv.org/abs/2410.18956), reused by Uni3R and FF3R: every frame
``i`` with ``i mod 8`` in ``{1, 4}`` is a target, rendered from the two context frames ``i - 1`` and
``i + 1``. The N-view variant puts the context on even frames and the targets on the odd frames
between them. Frame indices refer to the scene's frame order (0-based).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

SCANNET_TARGET_RESIDUES: tuple[int, ...] = (1, 4)
"""Targets are the frames ``i`` with ``i % 8`` in this set."""


PROTOCOL_CLASSES: tuple[str, ...] = ("unlabeled", "wall", "floor", "ceiling", "chair", "table", "sofa", "bed", "other")
"""LSM's ScanNet protocol classes in label-id order; id 0 is ignored in every metric."""


@dataclass(frozen=True)
class Split:
    """One evaluation case: predict from ``context`` frames, evaluate at ``target``.

    Attributes:
        context: frame indices fed to the network, ascending (a list is accepted and stored as a tuple).
        target: the held-out frame index.
    """

    context: tuple[int, ...]
    target: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "context", tuple(int(i) for i in self.context))
        if not self.context:
            raise ValueError("Split needs at least one context frame")
        if self.target in self.context:
            raise ValueError(f"target frame {self.target} is also a context frame {self.context}")


@dataclass(frozen=True)
class ContextGroup:
    """Targets that share one context, so the network runs once for all of them."""

    context: tuple[int, ...]
    targets: tuple[int, ...]


def scannet_split(num_frames: int) -> list[Split]:
    """The 2-view ScanNet split: targets ``i`` with ``i % 8 in {1, 4}``, context ``(i - 1, i + 1)``.

    Targets without both neighbours inside ``[0, num_frames)`` are skipped.

    Example:
        >>> [s.target for s in scannet_split(24)]
        [1, 4, 9, 12, 17, 20]
        >>> scannet_split(24)[0]
        Split(context=(0, 2), target=1)
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    return [
        Split(context=(i - 1, i + 1), target=i)
        for i in range(1, num_frames - 1)
        if i % 8 in SCANNET_TARGET_RESIDUES
    ]


def _evenly(items: Sequence[int], n: int) -> list[int]:
    """``n`` items spread evenly over ``items``, first and last included (index ``round(k (E-1)/(n-1))``)."""
    e = len(items)
    if n == 1:
        return [items[0]]
    # Integer round-half-up, so the choice does not depend on float rounding.
    return [items[(2 * k * (e - 1) + (n - 1)) // (2 * (n - 1))] for k in range(n)]


def nview_split(num_frames: int, n_context: int) -> list[Split]:
    """The N-view split: context on even frames, targets on the odd frames between them.

    The context is the even frames ``0, 2, 4, ...`` below ``num_frames``; if there are more than
    ``n_context`` of them, ``n_context`` are chosen evenly (first and last even frame always kept,
    the k-th at position ``round(k * (E - 1) / (n_context - 1))`` of the ``E`` even frames). Every
    odd frame strictly inside the span of the chosen context is a target. All returned splits share
    that context; :func:`group_by_context` regroups them.

    Example:
        >>> [s.target for s in nview_split(9, 3)], nview_split(9, 3)[0].context
        ([1, 3, 5, 7], (0, 4, 8))
    """
    if n_context < 2:
        raise ValueError(f"nview_split needs n_context >= 2 (targets lie between context frames), got {n_context}")
    evens = list(range(0, num_frames, 2))
    if len(evens) < n_context:
        raise ValueError(f"{num_frames} frames have only {len(evens)} even frames, fewer than n_context={n_context}")
    context = tuple(_evenly(evens, n_context))
    return [Split(context=context, target=i) for i in range(context[0] + 1, context[-1], 2)]


def group_by_context(splits: Sequence[Split]) -> list[ContextGroup]:
    """Group splits by their context (first-seen order), so each context is reconstructed once."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for s in splits:
        groups.setdefault(s.context, []).append(s.target)
    return [ContextGroup(context=c, targets=tuple(t)) for c, t in groups.items()]
