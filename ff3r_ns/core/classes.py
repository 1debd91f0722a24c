"""The class-name rule: which label id is "ignore", and which class a piece of text names.

Label id :data:`IGNORE_ID` (0) is "ignore" whatever a dataset calls it ("unlabeled", "unlabelled", "void",
"unknown", ...): it is never predicted, never scored and never a query's negative. Every other id is matched to
another class list (a teacher's, a checkpoint's) by *name*, as the offline teacher matches text: "chair", "a chair",
"chairs" and "a photo of a chair." all name the class "chair".
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

IGNORE_ID = 0
"""The label id that means "ignore" in every class list, whatever its name."""

_PREFIXES = ("a photo of a ", "a photo of an ", "a photo of the ", "a photo of ", "an ", "a ", "the ")


def _canonical(text: str) -> str:
    t = re.sub(r"[\s_]+", " ", text.strip().lower()).rstrip(".")
    for p in _PREFIXES:
        if t.startswith(p):
            t = t[len(p) :]
            break
    return t


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def class_index(text: str, classes: Sequence[str]) -> Optional[int]:
    """Index in ``classes`` of the class ``text`` names ("chair", "a chair", "chairs", "a photo of a chair."), or None."""
    lookup = {_singular(_canonical(c)): i for i, c in enumerate(classes)}
    return lookup.get(_singular(_canonical(text)), lookup.get(_canonical(text)))


def scored_ids(num_classes: int) -> list[int]:
    """The label ids that are predicted and scored: all but :data:`IGNORE_ID`.

    Example:
        >>> scored_ids(4)
        [1, 2, 3]
    """
    return [i for i in range(num_classes) if i != IGNORE_ID]


def label_lut(label_classes: Sequence[str], target_classes: Sequence[str]) -> list[Optional[int]]:
    """Label id in ``label_classes`` -> id in ``target_classes``: :data:`IGNORE_ID` -> :data:`IGNORE_ID` whatever
    either list calls it, every other id by name (:func:`class_index`; None where ``target_classes`` lacks it).

    Example:
        >>> label_lut(["void", "wall", "chair", "lamp"], ["unlabeled", "chair", "wall"])
        [0, 2, 1, None]
    """
    return [IGNORE_ID if i == IGNORE_ID else class_index(name, target_classes) for i, name in enumerate(label_classes)]
