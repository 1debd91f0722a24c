"""The class palette: one colour per label id, for every image that colours classes (the viewer's segmentation,
``ff3r-eval``'s panels, anything exported).

Ids 1-8 are the protocol's classes (:data:`ff3r_ns.core.protocol.PROTOCOL_CLASSES`) in ScanNet-like colours, id 0
("ignore") is black; ids past the fixed list get seeded random colours, the same in every run.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ff3r_ns.core.classes import IGNORE_ID

CLASS_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),  # 0: ignore
    (174, 199, 232),  # wall
    (152, 223, 138),  # floor
    (255, 187, 120),  # ceiling
    (214, 39, 40),  # chair
    (148, 103, 189),  # table
    (140, 86, 75),  # sofa
    (227, 119, 194),  # bed
    (188, 189, 34),  # other
    (23, 190, 207),
    (255, 127, 14),
    (44, 160, 44),
)
"""Label id -> 8-bit RGB for the first ids."""
assert CLASS_PALETTE[IGNORE_ID] == (0, 0, 0)


def class_colors(num_classes: int) -> Tensor:
    """``[num_classes, 3]`` float32 colours in [0, 1] of label ids ``0..num_classes-1`` (:data:`CLASS_PALETTE`, then
    seeded random colours).

    Example:
        >>> class_colors(5)[4].mul(255).round().tolist()  # chair
        [214.0, 39.0, 40.0]
    """
    base = torch.tensor(CLASS_PALETTE, dtype=torch.float32) / 255.0
    if num_classes <= len(base):
        return base[:num_classes]
    g = torch.Generator().manual_seed(0)
    return torch.cat([base, torch.rand(num_classes - len(base), 3, generator=g)])
