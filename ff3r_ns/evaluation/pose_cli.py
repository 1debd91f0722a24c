"""``ff3r-pose-eval PRED REF``: camera accuracy of one camera file against another (the numbers:
:func:`ff3r_ns.core.pose_eval.evaluate_poses`), frames matched by image file name.

Example::

    ff3r-pose-eval cams/transforms_train.json scene/transforms.json --json pose.json

Exit status 1 on a file it cannot read or match, with one ``ff3r-pose-eval: error: ...`` line on stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Sequence

import tyro

from ff3r_ns.cli import parse
from ff3r_ns.core.pose_eval import cameras_from_transforms, evaluate_poses, match_by_name

PROG = "ff3r-pose-eval"


@dataclass(frozen=True)
class PoseEvalCommand:
    """Pose accuracy of one transforms.json against another."""

    pred: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="PRED")]
    """predicted cameras: a transforms.json (or its folder), or the transforms_train.json that ns-export cameras
    writes"""
    ref: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="REF")]
    """reference cameras: a transforms.json (or its folder)"""
    json: Optional[Path] = None
    """also write the summary to this JSON file"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` (tyro, from :class:`PoseEvalCommand`), print the summary; returns the exit status."""
    args = parse(PoseEvalCommand, PROG, argv)
    try:
        pred, ref, names = match_by_name(cameras_from_transforms(args.pred), cameras_from_transforms(args.ref))
        errors = evaluate_poses(pred, ref)
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    row = errors.summary()
    for key, value in row.items():
        print(f"{key:>24s}  {value:.4f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"frames": names, **row}, indent=1))
    return 0


def entrypoint() -> None:
    """Console script ``ff3r-pose-eval``."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
