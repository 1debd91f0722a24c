"""Does a checkpoint's camera head predict relative poses, or a constant? (geometry stage diagnostic)

For each scene under ``SCENES`` (generated, with ground-truth cameras and depth) and a few context windows, runs
the network and compares its first-view-anchored pose encodings with the ground truth normalised as in
``ff3r-pretrain-geometry`` (first camera at the origin, mean point distance 1). Prints, over all non-first views:

* translation error vs the ground-truth translation length (a head that predicts ~0 has error ~= length);
* rotation error vs the error of always predicting the identity rotation (the "constant pose" baseline).

A head that learned nothing about poses sits on the baselines. Example::

    ff3r-make-scene /tmp/ev/room1 --seed 1 --views 32 --width 112 --height 112   # seeds < 1000: unseen in training
    python scripts/camera_check.py ff3r_ns/weights/ff3r_tiny.pt /tmp/ev
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ff3r_ns.core.checkpoint import load_checkpoint
from ff3r_ns.core.network.model import FF3R
from ff3r_ns.training.data import BankContents, SceneBank
from ff3r_ns.core.geometry_losses import normalise_ground_truth

WINDOWS = ([0, 1, 2, 3, 4, 5], [3, 5, 7, 9, 11, 13])
"""Context windows (frame indices): six contiguous frames and six with stride 2, as in training."""


def quaternion_angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between unit quaternions ``[..., 4]`` in degrees (sign-invariant; float64: acos is coarse near 1)."""
    return (2 * torch.acos((a.double() * b.double()).sum(-1).abs().clamp(max=1.0))).rad2deg()


@torch.no_grad()
def check(weights: Path, scenes: Path, windows: Sequence[Sequence[int]] = WINDOWS) -> dict[str, float]:
    """Mean errors and baselines over all scenes and ``windows`` (frame-index lists; see the module docstring)."""
    ckpt = load_checkpoint(weights)
    net = FF3R(ckpt.architecture)
    net.load_state_dict(ckpt.network, strict=False)  # stage-1 checkpoints may lack the fusion modules
    net.eval()
    bank = SceneBank(scenes, ckpt.image_size, BankContents(teacher=None, geometry=True))
    t_err, t_len, t_pred, r_err, r_base = [], [], [], [], []
    for i in range(len(bank)):
        for frames in windows:
            frames = [f for f in frames if f < len(bank.scenes[i])]
            b = bank.batch(i, frames, "cpu")
            pred = net(b.images).pose_enc[1:]
            gt = normalise_ground_truth(b.depth, b.cameras).pose_enc[1:]
            t_err.append((pred[:, :3] - gt[:, :3]).norm(dim=-1))
            t_len.append(gt[:, :3].norm(dim=-1))
            t_pred.append(pred[:, :3].norm(dim=-1))
            q = F.normalize(pred[:, 3:7], dim=-1)
            r_err.append(quaternion_angle_deg(q, gt[:, 3:7]))
            r_base.append(quaternion_angle_deg(torch.tensor([0.0, 0, 0, 1]).expand_as(q), gt[:, 3:7]))
    mean = lambda xs: float(torch.cat(xs).mean())  # noqa: E731
    return {"translation_error": mean(t_err), "translation_length_gt": mean(t_len), "translation_length_pred": mean(t_pred),
            "rotation_error_deg": mean(r_err), "rotation_identity_baseline_deg": mean(r_base)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights", type=Path, help="FF3R checkpoint (stage 1 or 2)")
    p.add_argument("scenes", type=Path, help="folder of generated scenes (searched for transforms.json)")
    p.add_argument("--windows", nargs="+", default=None, metavar="I,J,...",
                   help="context windows as comma-separated frame indices (default: 0..5 and 3,5,..,13); e.g. "
                        "'0,1 3,4 9,10' for pairs of neighbouring frames")
    args = p.parse_args()
    windows = [[int(i) for i in w.split(",")] for w in args.windows] if args.windows else WINDOWS
    if any(len(w) < 2 for w in windows):
        p.error("each window needs at least two frames")
    r = check(args.weights, args.scenes, windows)
    print(f"translation error {r['translation_error']:.3f} (ground-truth length {r['translation_length_gt']:.3f}, "
          f"predicted length {r['translation_length_pred']:.3f}); rotation error {r['rotation_error_deg']:.1f} deg "
          f"(identity baseline {r['rotation_identity_baseline_deg']:.1f} deg)")


if __name__ == "__main__":
    main()
