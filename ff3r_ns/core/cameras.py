"""Camera conventions, VGGT's pose encoding, unprojection and similarity alignment.

Inside ``ff3r_ns.core`` every camera is **OpenCV**: x right, y down, z forward, and extrinsics
are world-to-camera (``[R | t]`` maps a world point into the camera frame), as in VGGT. nerfstudio
stores **OpenGL** camera-to-world matrices (x right, y up, z backward); convert at the boundary with
:func:`opengl_c2w_to_opencv_w2c` / :func:`opencv_w2c_to_opengl_c2w`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

# Flips y and z: OpenGL camera axes <-> OpenCV camera axes.
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


@dataclass
class Cameras:
    """Pinhole cameras in the OpenCV convention.

    Attributes:
        world_to_cam: ``[*B, 4, 4]`` extrinsics (world -> camera).
        intrinsics: ``[*B, 3, 3]`` in pixels of an image of ``width`` x ``height``.
        width: image width in pixels.
        height: image height in pixels.
    """

    world_to_cam: Tensor
    intrinsics: Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.world_to_cam.shape[-2:] != (4, 4) or self.intrinsics.shape[-2:] != (3, 3):
            raise ValueError(
                f"Cameras needs world_to_cam [..., 4, 4] and intrinsics [..., 3, 3], "
                f"got {tuple(self.world_to_cam.shape)} and {tuple(self.intrinsics.shape)}"
            )
        if self.world_to_cam.shape[:-2] != self.intrinsics.shape[:-2]:
            raise ValueError("Cameras: world_to_cam and intrinsics disagree on the batch shape")

    def __len__(self) -> int:
        return self.world_to_cam.shape[0] if self.world_to_cam.ndim > 2 else 1

    @property
    def cam_to_world(self) -> Tensor:
        return invert_rigid(self.world_to_cam)

    @property
    def centers(self) -> Tensor:
        """``[*B, 3]`` camera centres in world coordinates."""
        return self.cam_to_world[..., :3, 3]

    def __getitem__(self, index) -> "Cameras":
        w2c, k = self.world_to_cam[index], self.intrinsics[index]
        return Cameras(w2c, k, self.width, self.height)

    def to(self, *args, **kwargs) -> "Cameras":
        return Cameras(self.world_to_cam.to(*args, **kwargs), self.intrinsics.to(*args, **kwargs), self.width, self.height)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras for an image resized to ``width`` x ``height``."""
        return Cameras(self.world_to_cam, scale_intrinsics(self.intrinsics, width / self.width, height / self.height), width, height)


def invert_rigid(m: Tensor) -> Tensor:
    """Invert ``[..., 4, 4]`` rigid (or similarity-free) transforms without a general inverse."""
    r = m[..., :3, :3]
    t = m[..., :3, 3:]
    rt = r.transpose(-1, -2)
    out = torch.zeros_like(m)
    out[..., :3, :3] = rt
    out[..., :3, 3:] = -rt @ t
    out[..., 3, 3] = 1.0
    return out


def to_homogeneous(rt: Tensor) -> Tensor:
    """``[..., 3, 4]`` -> ``[..., 4, 4]``."""
    if rt.shape[-2:] == (4, 4):
        return rt
    bottom = torch.zeros(*rt.shape[:-2], 1, 4, dtype=rt.dtype, device=rt.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([rt, bottom], dim=-2)


def opengl_c2w_to_opencv_w2c(c2w: Tensor) -> Tensor:
    """nerfstudio / OpenGL camera-to-world ``[..., 3|4, 4]`` -> OpenCV world-to-camera ``[..., 4, 4]``."""
    c2w = to_homogeneous(c2w)
    flip = _GL_TO_CV.to(c2w)
    c2w_cv = c2w.clone()
    c2w_cv[..., :3, :3] = c2w[..., :3, :3] @ flip
    return invert_rigid(c2w_cv)


def opencv_w2c_to_opengl_c2w(w2c: Tensor) -> Tensor:
    """OpenCV world-to-camera ``[..., 4, 4]`` -> OpenGL camera-to-world ``[..., 4, 4]``."""
    c2w = invert_rigid(to_homogeneous(w2c))
    flip = _GL_TO_CV.to(c2w)
    c2w[..., :3, :3] = c2w[..., :3, :3] @ flip
    return c2w


def intrinsics_matrix(fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """Stack focal lengths and principal points (each ``[*B]``) into ``[*B, 3, 3]``."""
    k = torch.zeros(*fx.shape, 3, 3, dtype=fx.dtype, device=fx.device)
    k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = fx, fy, cx, cy, 1.0
    return k


def scale_intrinsics(k: Tensor, sx: float, sy: float) -> Tensor:
    """Intrinsics for an image scaled by ``sx`` horizontally and ``sy`` vertically."""
    k = k.clone()
    k[..., 0, :] *= sx
    k[..., 1, :] *= sy
    return k


# --------------------------------------------------------------------------- quaternions
def quat_to_mat(q: Tensor) -> Tensor:
    """Quaternions ``[..., 4]`` in **xyzw** order (VGGT's) to rotation matrices ``[..., 3, 3]``."""
    q = F.normalize(q, dim=-1)
    x, y, z, w = q.unbind(-1)
    m = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return m.reshape(*q.shape[:-1], 3, 3)


def mat_to_quat(m: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` to unit quaternions ``[..., 4]`` in **xyzw** order, ``w >= 0``.

    Uses the numerically stable branch per element (Shepperd's method): each candidate is computed
    from the largest of the four squared components.
    """
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * component**2 for w, x, y, z
    sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    ).clamp_min(1e-12)
    r = sq.sqrt()  # 2 * |component|
    # Each row: a quaternion (w, x, y, z) scaled by 2 * its pivot component.
    cands = torch.stack(
        [
            torch.stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], -1),
            torch.stack([m02 - m20, m10 + m01, sq[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, sq[..., 3]], -1),
        ],
        dim=-2,
    ) / (2.0 * r[..., None])
    best = sq.argmax(dim=-1)
    wxyz = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    wxyz = F.normalize(wxyz, dim=-1)
    wxyz = torch.where(wxyz[..., :1] < 0, -wxyz, wxyz)
    return torch.cat([wxyz[..., 1:], wxyz[..., :1]], dim=-1)


# --------------------------------------------------------------------------- VGGT pose encoding
def extri_intri_to_pose_encoding(world_to_cam: Tensor, intrinsics: Tensor, height: int, width: int) -> Tensor:
    """VGGT's 9-number camera encoding ``[T(3), quat_xyzw(4), fov_h, fov_w]``.

    Args:
        world_to_cam: ``[*B, 3|4, 4]`` OpenCV extrinsics.
        intrinsics: ``[*B, 3, 3]``; the principal point is assumed at the image centre.
        height, width: image size the intrinsics refer to.

    Returns:
        ``[*B, 9]`` (VGGT ``pose_encoding_type="absT_quaR_FoV"``).
    """
    t = world_to_cam[..., :3, 3]
    quat = mat_to_quat(world_to_cam[..., :3, :3])
    fov_h = 2 * torch.atan((height / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsics[..., 0, 0])
    return torch.cat([t, quat, fov_h[..., None], fov_w[..., None]], dim=-1)


def pose_encoding_to_extri_intri(pose_enc: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`extri_intri_to_pose_encoding`.

    Returns:
        ``world_to_cam [*B, 4, 4]`` and ``intrinsics [*B, 3, 3]`` with the principal point at the centre.
    """
    t, quat, fov_h, fov_w = pose_enc[..., :3], pose_enc[..., 3:7], pose_enc[..., 7], pose_enc[..., 8]
    rt = torch.cat([quat_to_mat(quat), t[..., None]], dim=-1)
    fy = (height / 2) / torch.tan(fov_h / 2)
    fx = (width / 2) / torch.tan(fov_w / 2)
    half = lambda v: torch.full_like(fx, v)  # noqa: E731
    k = intrinsics_matrix(fx, fy, half(width / 2), half(height / 2))
    return to_homogeneous(rt), k


# --------------------------------------------------------------------------- geometry
def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """``[H, W, 2]`` pixel-centre coordinates ``(u, v)`` (gsplat's convention: centres at +0.5)."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype) + 0.5,
        torch.arange(width, device=device, dtype=dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def unproject_depth(depth: Tensor, cameras: Cameras) -> Tensor:
    """Lift z-depth maps to world points.

    Args:
        depth: ``[S, H, W]`` z-depth (distance along the optical axis).
        cameras: ``S`` cameras of size ``W x H``.

    Returns:
        ``[S, H, W, 3]`` world points.
    """
    s, h, w = depth.shape
    uv = pixel_grid(h, w, device=depth.device, dtype=depth.dtype)
    k = cameras.intrinsics.to(depth.dtype)
    fx, fy = k[:, 0, 0, None, None], k[:, 1, 1, None, None]
    cx, cy = k[:, 0, 2, None, None], k[:, 1, 2, None, None]
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    cam_pts = torch.stack([x, y, depth], dim=-1)  # [S, H, W, 3]
    c2w = cameras.cam_to_world.to(depth.dtype)
    return torch.einsum("sij,shwj->shwi", c2w[:, :3, :3], cam_pts) + c2w[:, None, None, :3, 3]


def project_points(points: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """Project world points ``[S, N, 3]`` into each of ``S`` cameras.

    Returns:
        ``uv [S, N, 2]`` pixel coordinates and ``z [S, N]`` depths.
    """
    w2c = cameras.world_to_cam.to(points.dtype)
    cam = torch.einsum("sij,snj->sni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    z = cam[..., 2]
    k = cameras.intrinsics.to(points.dtype)
    uvw = torch.einsum("sij,snj->sni", k, cam)
    uv = uvw[..., :2] / z.clamp_min(1e-8)[..., None]
    return uv, z


def umeyama(src: Tensor, dst: Tensor, with_scale: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` (Umeyama, 1991).

    Args:
        src, dst: ``[N, 3]`` corresponding points (``N >= 3`` for a unique rotation).
        with_scale: estimate ``s``; otherwise ``s = 1``.

    Returns:
        ``s`` (scalar tensor), ``R [3, 3]``, ``t [3]``.
    """
    src64, dst64 = src.double(), dst.double()
    mu_s, mu_d = src64.mean(0), dst64.mean(0)
    xs, xd = src64 - mu_s, dst64 - mu_d
    cov = xd.T @ xs / src.shape[0]
    u, sig, vt = torch.linalg.svd(cov)
    d = torch.ones(3, dtype=torch.float64, device=src.device)
    if torch.det(u) * torch.det(vt) < 0:
        d[2] = -1.0
    r = u @ torch.diag(d) @ vt
    var_s = (xs**2).sum() / src.shape[0]
    s = (sig * d).sum() / var_s.clamp_min(1e-20) if with_scale else torch.ones((), dtype=torch.float64, device=src.device)
    t = mu_d - s * r @ mu_s
    return s.to(src.dtype), r.to(src.dtype), t.to(src.dtype)


@dataclass
class Sim3:
    """A similarity transform ``x -> scale * rotation @ x + translation``.

    Attributes:
        scale: scalar tensor.
        rotation: ``[3, 3]``.
        translation: ``[3]``.
    """

    scale: Tensor
    rotation: Tensor
    translation: Tensor

    @classmethod
    def identity(cls, device=None, dtype=torch.float32) -> "Sim3":
        return cls(torch.ones((), device=device, dtype=dtype), torch.eye(3, device=device, dtype=dtype), torch.zeros(3, device=device, dtype=dtype))

    def apply_points(self, x: Tensor) -> Tensor:
        """``[..., 3]`` -> ``[..., 3]``."""
        return self.scale * x @ self.rotation.T + self.translation

    def apply_world_to_cam(self, world_to_cam: Tensor) -> Tensor:
        """Extrinsics ``[..., 4, 4]`` of cameras moved along with the world (the camera stays rigid;
        depths grow by ``scale``)."""
        c2w = invert_rigid(world_to_cam)
        out = c2w.clone()
        out[..., :3, :3] = self.rotation @ c2w[..., :3, :3]
        out[..., :3, 3] = self.apply_points(c2w[..., :3, 3])
        return invert_rigid(out)


def align_cameras(source: Tensor, target: Tensor, source_scale: Optional[float] = None) -> Sim3:
    """The similarity that carries cameras ``source`` onto ``target`` (both OpenCV world-to-camera ``[S, 4, 4]``).

    Rotation comes from the camera orientations (the chordal L2 mean of ``R_t R_s^T`` over views), which is
    well defined even for one view or collinear centres; scale and translation then come from the camera
    centres by least squares. The scale is only trusted when the source centres spread by more than 1% of
    ``source_scale`` (a typical scene distance in source units, e.g. the median predicted depth): a
    prediction whose cameras (nearly) coincide carries no baseline to measure, so the scale is then 1
    and the first cameras coincide. When the centres are poorly correlated (the least-squares fit explains less
    than half of the spread, e.g. a prediction with wrong camera positions), the least-squares scale collapses
    towards 0 (it is the correlation times the spread ratio), so the ratio of the RMS spreads is used instead.

    Returns:
        ``Sim3`` mapping source-world points into the target world.
    """
    src_c2w, tgt_c2w = invert_rigid(source.double()), invert_rigid(target.double())
    # world rotation R with R @ R_src_i ~= R_tgt_i for every view i
    m = (tgt_c2w[:, :3, :3] @ src_c2w[:, :3, :3].transpose(-1, -2)).sum(0)
    u, _, vt = torch.linalg.svd(m)
    d = torch.ones(3, dtype=m.dtype, device=m.device)
    d[2] = torch.sign(torch.det(u @ vt))
    r = u @ torch.diag(d) @ vt
    cs, ct = src_c2w[:, :3, 3] @ r.T, tgt_c2w[:, :3, 3]
    xs, xt = cs - cs.mean(0), ct - ct.mean(0)
    rms_s, rms_t = xs.pow(2).sum(-1).mean().sqrt(), xt.pow(2).sum(-1).mean().sqrt()
    reference = float(source_scale) if source_scale is not None else float(cs.norm(dim=-1).max().clamp_min(1e-12))
    if source.shape[0] < 2 or float(rms_s) <= 1e-2 * reference or float(rms_t) <= 1e-12:
        scale = torch.ones((), dtype=m.dtype, device=m.device)
        t = ct[0] - cs[0]
    else:
        scale = (xs * xt).sum() / xs.pow(2).sum()
        correlation = scale * rms_s / rms_t
        if correlation < 0.5:
            scale = rms_t / rms_s
        t = ct.mean(0) - scale * cs.mean(0)
    dtype = source.dtype
    return Sim3(scale.to(dtype), r.to(dtype), t.to(dtype))
