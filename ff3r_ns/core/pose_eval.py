"""Camera pose accuracy of a reconstruction against reference cameras (no nerfstudio import).

Three families of numbers, all in :class:`PoseErrors`:

* **Absolute** (after a similarity alignment): the predicted camera centres are carried onto the
  reference centres by Umeyama's least-squares similarity (:func:`~ff3r_ns.core.cameras.umeyama`), the
  predicted orientations are rotated by the same rotation, and per camera we measure the rotation angle
  to the reference orientation and the distance between centres (reference units, and divided by the
  reference trajectory's RMS spread so that numbers compare across scenes).
* **Relative, VGGT's manner** (https://github.com/facebookresearch/vggt, ``evaluation/test_co3d.py``):
  for every pair ``i < j`` the relative pose, the angle between predicted and reference relative
  rotations, and the angle between relative translation *directions* folded by ``min(a, 180 - a)``
  (a direction's sign is ambiguous); a pair's error is the larger of the two; AUC@T is the mean over
  ``k = 1..T`` of the fraction of pairs with error below ``k`` degrees (VGGT's unit-bin histogram, whose
  cumulative sum is averaged). Unlike ``test_co3d.py`` (``inv(E_i) @ E_j`` after moving both first
  cameras to the identity) we use ``E_j @ inv(E_i)``, camera ``i``'s frame to camera ``j``'s, which needs
  no gauge fixing: it is unchanged by any similarity of the world. No alignment enters these numbers.
* **Focal length**: ``|f_pred / f_ref - 1|`` per camera and axis, after expressing the predicted
  intrinsics at the reference image size.

Example::

    errors = evaluate_poses(pred_cameras, ref_cameras)
    print(errors.auc[30], errors.rotation_error_deg.mean())

``ff3r-pose-eval PRED.json REF.json`` (:mod:`ff3r_ns.evaluation.pose_cli`) compares two camera files (a nerfstudio
``transforms.json``, or the ``transforms_train.json`` that ``ns-export cameras`` writes), matching frames by file name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ff3r_ns.core.cameras import Cameras, Sim3, invert_rigid, opengl_c2w_to_opencv_w2c, umeyama
from ff3r_ns.core.transforms_json import read_transforms_json

AUC_THRESHOLDS = (5, 15, 30)


def rotation_angle_deg(r_a: Tensor, r_b: Tensor) -> Tensor:
    """Geodesic angle in degrees between rotations ``[..., 3, 3]``.

    Uses the chordal distance, ``||R_a - R_b||_F = 2 sqrt(2) sin(theta / 2)``, which, unlike
    ``acos((trace - 1) / 2)``, stays accurate for tiny angles.
    """
    chord = torch.linalg.matrix_norm(r_a.double() - r_b.double())
    return torch.rad2deg(2.0 * torch.asin((chord / (2.0 * math.sqrt(2.0))).clamp(max=1.0)))


def direction_angle_deg(a: Tensor, b: Tensor, sign_ambiguous: bool = True, eps: float = 1e-12) -> Tensor:
    """Angle in degrees between vectors ``[..., 3]`` (folded to ``[0, 90]`` when ``sign_ambiguous``).

    A zero-length vector has no direction: its angle is 90 deg (VGGT assigns a huge error instead; 90 is
    the largest folded angle and keeps means finite).
    """
    a, b = a.double(), b.double()
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = (a * b).sum(-1) / (na * nb).clamp_min(eps)
    sin = torch.linalg.cross(a, b).norm(dim=-1) / (na * nb).clamp_min(eps)
    angle = torch.rad2deg(torch.atan2(sin, cos))  # atan2: accurate near 0 and 180 deg
    if sign_ambiguous:
        angle = torch.minimum(angle, 180.0 - angle)
    return torch.where((na < eps) | (nb < eps), torch.full_like(angle, 90.0), angle)


def pose_auc(pair_errors_deg: Tensor, threshold: int) -> float:
    """VGGT's AUC: mean over ``k = 1..threshold`` of the fraction of errors in ``[0, k)``.

    (The last bin is closed, as ``numpy.histogram``'s: an error of exactly ``threshold`` counts at ``k =
    threshold``.) Example: errors ``[0.5, 2.5]`` at threshold 5 -> fractions ``[.5, .5, 1, 1, 1]`` -> 0.8.
    """
    if threshold < 1:
        raise ValueError(f"AUC threshold must be >= 1 degree, got {threshold}")
    e = pair_errors_deg.double().flatten()
    if e.numel() == 0:
        raise ValueError("pose_auc needs at least one pair error")
    ks = torch.arange(1, threshold + 1, dtype=torch.float64, device=e.device)
    below = (e[None, :] < ks[:, None]).double()
    below[-1] = (e <= threshold).double()
    return float(below.mean(dim=1).mean())


def pair_indices(n: int) -> Tuple[Tensor, Tensor]:
    """All pairs ``i < j`` of ``n`` cameras (as ``torch.combinations``)."""
    i, j = torch.combinations(torch.arange(n), 2).unbind(-1)
    return i, j


@dataclass
class PoseErrors:
    """Result of :func:`evaluate_poses` (``S`` cameras, ``P = S (S - 1) / 2`` pairs; errors in degrees).

    Attributes:
        rotation_error_deg: ``[S]`` absolute orientation error after the alignment.
        translation_error: ``[S]`` centre distance after the alignment, in reference units.
        translation_error_rel: ``[S]`` the same divided by the reference centres' RMS distance to their mean.
        rel_rotation_error_deg: ``[P]`` relative rotation error per pair.
        rel_translation_error_deg: ``[P]`` relative translation-direction error per pair (folded to [0, 90]).
        auc: AUC at 5, 15 and 30 degrees of the per-pair maximum of the two relative errors.
        focal_error: ``[S, 2]`` relative focal length error ``|f_pred / f_ref - 1|`` for (fx, fy); NaN where either
            side has no intrinsics (an ``ns-export cameras`` list).
        alignment: the similarity carrying predicted world points into the reference world.
    """

    rotation_error_deg: Tensor
    translation_error: Tensor
    translation_error_rel: Tensor
    rel_rotation_error_deg: Tensor
    rel_translation_error_deg: Tensor
    auc: Dict[int, float]
    focal_error: Tensor
    alignment: Sim3

    @property
    def num_cameras(self) -> int:
        return int(self.rotation_error_deg.shape[0])

    def summary(self) -> Dict[str, float]:
        """Flat scalar summary (means and medians) for JSON rows and logs."""
        row: Dict[str, float] = {
            "num_cameras": float(self.num_cameras),
            "rot_err_deg_mean": float(self.rotation_error_deg.mean()),
            "rot_err_deg_median": float(self.rotation_error_deg.median()),
            "trans_err_mean": float(self.translation_error.mean()),
            "trans_err_rel_mean": float(self.translation_error_rel.mean()),
            "rel_rot_err_deg_mean": float(self.rel_rotation_error_deg.mean()),
            "rel_trans_err_deg_mean": float(self.rel_translation_error_deg.mean()),
            "alignment_scale": float(self.alignment.scale),
        }
        if bool(torch.isfinite(self.focal_error).all()):  # NaN where a camera file has no intrinsics
            row["focal_err_rel_mean"] = float(self.focal_error.mean())
        row.update({f"auc_{t}": v for t, v in self.auc.items()})
        return row


def align_by_centers(pred: Cameras, ref: Cameras) -> Sim3:
    """Umeyama similarity carrying the predicted camera centres onto the reference ones (``S >= 3``)."""
    if len(pred) < 3:
        raise ValueError(f"a similarity alignment on camera centres needs at least 3 cameras, got {len(pred)}")
    s, r, t = umeyama(pred.centers.double(), ref.centers.double(), with_scale=True)
    return Sim3(s, r, t)


def evaluate_poses(pred: Cameras, ref: Cameras, thresholds: Sequence[int] = AUC_THRESHOLDS) -> PoseErrors:
    """Pose and focal accuracy of ``pred`` against ``ref`` (same cameras, same order).

    Args:
        pred: ``S`` predicted OpenCV cameras (any world frame and scale, any image size).
        ref: ``S`` reference cameras.
        thresholds: AUC thresholds in degrees.

    Returns:
        :class:`PoseErrors`.

    Raises:
        ValueError: different camera counts, fewer than 3 cameras, or non-finite poses.
    """
    if pred.world_to_cam.ndim != 3 or ref.world_to_cam.ndim != 3:
        raise ValueError("evaluate_poses takes unbatched cameras: world_to_cam [S, 4, 4]")
    if len(pred) != len(ref):
        raise ValueError(f"{len(pred)} predicted cameras but {len(ref)} reference cameras")
    for name, cams in (("predicted", pred), ("reference", ref)):
        if not torch.isfinite(cams.world_to_cam).all():
            raise ValueError(f"the {name} cameras have non-finite poses")
    device = ref.world_to_cam.device
    p_w2c, r_w2c = pred.world_to_cam.double().to(device), ref.world_to_cam.double()
    pred64 = Cameras(p_w2c, pred.intrinsics.double().to(device), pred.width, pred.height)
    ref64 = Cameras(r_w2c, ref.intrinsics.double(), ref.width, ref.height)

    sim = align_by_centers(pred64, ref64)
    p_c2w, r_c2w = invert_rigid(p_w2c), invert_rigid(r_w2c)
    rot_err = rotation_angle_deg(sim.rotation @ p_c2w[:, :3, :3], r_c2w[:, :3, :3])
    centers = sim.apply_points(p_c2w[:, :3, 3])
    trans_err = (centers - r_c2w[:, :3, 3]).norm(dim=-1)
    ref_centers = r_c2w[:, :3, 3]
    spread = ((ref_centers - ref_centers.mean(0)) ** 2).sum(-1).mean().sqrt().clamp_min(1e-12)

    i, j = pair_indices(len(ref))
    i, j = i.to(device), j.to(device)
    rel_p = p_w2c[j] @ p_c2w[i]  # camera i's frame -> camera j's frame
    rel_r = r_w2c[j] @ r_c2w[i]
    rel_rot = rotation_angle_deg(rel_p[:, :3, :3], rel_r[:, :3, :3])
    rel_trans = direction_angle_deg(rel_p[:, :3, 3], rel_r[:, :3, 3])
    pair_err = torch.maximum(rel_rot, rel_trans)
    auc = {int(t): pose_auc(pair_err, int(t)) for t in thresholds}

    k_pred = pred64.resized(ref.width, ref.height).intrinsics
    f_pred = torch.stack([k_pred[:, 0, 0], k_pred[:, 1, 1]], dim=-1)
    f_ref = torch.stack([ref64.intrinsics[:, 0, 0], ref64.intrinsics[:, 1, 1]], dim=-1)
    focal_err = (f_pred / f_ref - 1.0).abs()
    return PoseErrors(rot_err, trans_err, trans_err / spread, rel_rot, rel_trans, auc, focal_err, sim)


# --------------------------------------------------------------------------- transforms.json
def cameras_from_transforms(path: Path) -> Tuple[List[str], Cameras]:
    """Frame names (file names of ``file_path``) and OpenCV cameras of a camera file.

    Two kinds are read:

    - a nerfstudio ``transforms.json`` (``frames`` with ``transform_matrix``; intrinsics per frame where given,
      else the file's global ``fl_x fl_y cx cy w h``; all frames one image size);
    - the list ``ns-export cameras`` writes (``transforms_train.json``: ``[{"file_path", "transform"}, ...]``,
      3x4 OpenGL camera-to-world). It carries no intrinsics: they are NaN (no focal error is reported).
    """
    meta, meta_path = read_transforms_json(path)
    if isinstance(meta, list):
        return _cameras_from_export(meta_path, meta)
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: neither a transforms.json (an object with 'frames') nor an ns-export camera list")
    frames = meta.get("frames") or []
    if not frames:
        raise ValueError(f"{meta_path}: lists no frames")
    names, c2w, ks, sizes = [], [], [], set()
    for f in frames:
        def get(key: str) -> float:
            value = f.get(key, meta.get(key))
            if value is None:
                raise ValueError(f"{meta_path}: frame {f.get('file_path')!r} has no {key}")
            return float(value)

        if "transform_matrix" not in f:
            raise ValueError(f"{meta_path}: frame {f.get('file_path')!r} has no transform_matrix")
        names.append(Path(f["file_path"]).name)
        c2w.append(torch.tensor(f["transform_matrix"], dtype=torch.float64))
        fx = get("fl_x")
        fy = float(f.get("fl_y", meta.get("fl_y", fx)))
        ks.append(torch.tensor([[fx, 0.0, get("cx")], [0.0, fy, get("cy")], [0.0, 0.0, 1.0]], dtype=torch.float64))
        sizes.add((int(get("w")), int(get("h"))))
    if len(sizes) != 1:
        raise ValueError(f"{meta_path}: frames of several image sizes {sorted(sizes)}")
    (w, h), = sizes
    return names, Cameras(opengl_c2w_to_opencv_w2c(torch.stack(c2w)), torch.stack(ks), w, h)


def _cameras_from_export(meta_path: Path, frames: list) -> Tuple[List[str], Cameras]:
    """An ``ns-export cameras`` list (see :func:`cameras_from_transforms`)."""
    if not frames:
        raise ValueError(f"{meta_path}: an empty camera list")
    names, c2w = [], []
    for f in frames:
        if not isinstance(f, dict) or "file_path" not in f or "transform" not in f:
            raise ValueError(f"{meta_path}: a list, but not of ns-export cameras ({{'file_path', 'transform'}} entries)")
        m = torch.tensor(f["transform"], dtype=torch.float64)
        if m.shape not in ((3, 4), (4, 4)):
            raise ValueError(f"{meta_path}: frame {f['file_path']!r}: transform must be 3x4 or 4x4, got {tuple(m.shape)}")
        names.append(Path(str(f["file_path"])).name)
        c2w.append(m[:3])
    k = torch.full((len(frames), 3, 3), float("nan"), dtype=torch.float64)
    return names, Cameras(opengl_c2w_to_opencv_w2c(torch.stack(c2w)), k, 1, 1)


def match_by_name(pred: Tuple[List[str], Cameras], ref: Tuple[List[str], Cameras]) -> Tuple[Cameras, Cameras, List[str]]:
    """The cameras of both sets restricted to the frame names they share, in the reference's order."""
    pred_index = {n: i for i, n in enumerate(pred[0])}
    common = [n for n in ref[0] if n in pred_index]
    if len(common) < 3:
        raise ValueError(f"only {len(common)} frame names in common (need 3): e.g. pred {pred[0][:3]}, ref {ref[0][:3]}")
    pi = torch.tensor([pred_index[n] for n in common])
    ri = torch.tensor([ref[0].index(n) for n in common])
    return pred[1][pi], ref[1][ri], common
