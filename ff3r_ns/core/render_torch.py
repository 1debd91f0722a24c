"""Pure-torch Gaussian rasterizer reproducing gsplat 1.4.0's forward semantics (CPU backend).

Three stages, mirroring gsplat's kernels so both backends agree to float32 precision:

1. :func:`project_gaussians` — EWA splatting (Zwicker et al. 2002,
   https://www.cs.umd.edu/~zwicker/publications/EWASplatting-TVCG02.pdf) exactly as
   ``fully_fused_projection``: 3D covariance ``R S S^T R^T``, Jacobian of the pinhole projection with
   x/z, y/z clamped to the frustum widened by 30 %, a 0.3 px^2 blur on the 2D covariance, a
   3-sigma radius, and culling by near/far planes and the image rectangle.
2. :func:`intersect_tiles` — every Gaussian is listed in the 16x16 tiles its radius box touches
   (``isect_tiles``), and each tile's list is sorted front to back by depth.
3. :func:`composite_tiles` — per pixel front-to-back alpha compositing with gsplat's rules
   (``rasterize_to_pixels_fwd.cu``): ``alpha = min(0.999, o * exp(-sigma))``, skipped when
   ``sigma < 0`` or ``alpha < 1/255``, and the pixel stops before the Gaussian that would take
   the transmittance to ``<= 1e-4``. Tiles are batched into dense ``[tiles, pixels, gaussians]``
   blocks walked front to back (a tile leaves once all its pixels are done); the transmittance is
   a cumulative sum of ``log(1 - alpha)``. A custom autograd function implements gsplat's
   backward, keeping two tensors per block from forward within a memory budget and recomputing
   the rest.

Dense tile blocks (the layout of gsplat's kernels) are used rather than sparse (pixel, Gaussian)
pairs (gsplat's ``_torch_impl.accumulate``), which need nerfacc and a sort of every pair.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

TILE_SIZE = 16
ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped (gsplat, 3DGS)
ALPHA_MAX = 0.999  # keeps 1 - alpha away from 0 so backward can divide by it
T_MIN = 1e-4  # a pixel stops before the transmittance would reach this
_LOG_T_MIN = math.log(T_MIN)
DEFAULT_BLOCK = 128  # Gaussians per front-to-back compositing step
DEFAULT_CHUNK_ELEMENTS = 1 << 20  # (tile, pixel, gaussian) triples per dense step (memory knob)
DEFAULT_SAVE_ELEMENTS = 1 << 24  # floats forward may keep for backward (64 MiB in float32)


@dataclass
class Projected:
    """Gaussians projected into ``C`` cameras (one row per camera and Gaussian).

    Attributes:
        means2d: ``[C, N, 2]`` pixel coordinates of the projected centres.
        conics: ``[C, N, 3]`` upper triangle ``(a, b, c)`` of the inverse blurred 2D covariance.
        depths: ``[C, N]`` camera-space z.
        radii: ``[C, N]`` int32 pixel radius (3 sigma of the largest axis); 0 means culled.
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor


@dataclass
class TileLists:
    """Per-tile depth-sorted Gaussian lists, tiles ordered by decreasing list length.

    Attributes:
        tile_ids: ``[U]`` global tile index ``c * tiles_y * tiles_x + ty * tiles_x + tx`` of every
            tile that has at least one Gaussian, longest list first.
        counts: ``[U]`` list lengths (non-increasing).
        offsets: ``[U + 1]`` start of each list in ``gaussian_ids``.
        gaussian_ids: ``[I]`` flat ``c * N + n`` indices, grouped by tile, front to back.
        tiles_x: tiles per image row.
        tiles_y: tiles per image column.
    """

    tile_ids: Tensor
    counts: Tensor
    offsets: Tensor
    gaussian_ids: Tensor
    tiles_x: int
    tiles_y: int


# --------------------------------------------------------------------------- projection
def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """3D covariances ``R S S^T R^T`` from wxyz quaternions ``[N, 4]`` (any norm) and scales ``[N, 3]``."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    r = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*quats.shape[:-1], 3, 3)  # fmt: skip
    m = r * scales[..., None, :]
    return m @ m.transpose(-1, -2)


# gsplat's fully_fused_projection arguments (the pure-torch reference of it).
def project_gaussians(
    means: Tensor,
    covars: Tensor,
    world_to_cam: Tensor,
    intrinsics: Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near: float = 0.01,
    far: float = 1e10,
) -> Projected:
    """EWA projection of 3D Gaussians into pinhole cameras, as gsplat 1.4.0's ``fully_fused_projection``.

    Args:
        means: ``[N, 3]`` world centres.
        covars: ``[N, 3, 3]`` world covariances.
        world_to_cam: ``[C, 4, 4]`` OpenCV extrinsics.
        intrinsics: ``[C, 3, 3]``.
        width, height: image size in pixels.
        eps2d: blur added to the diagonal of every 2D covariance (anti-aliasing floor, px^2).
        near, far: Gaussians with camera z outside ``[near, far]`` are culled.

    Returns:
        :class:`Projected`; culled entries have radius 0 (their other values are finite but unused).
    """
    r, t = world_to_cam[:, :3, :3], world_to_cam[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", r, means) + t[:, None]  # [C, N, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", r, covars, r)  # [C, N, 3, 3]
    x, y, z = means_c.unbind(-1)
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    # Culled Gaussians may sit at z <= 0; a safe z keeps their (unused) values finite so that no
    # NaN leaks into gradients through torch.where.
    in_depth = (z >= near) & (z <= far)
    zs = torch.where(in_depth, z, torch.ones_like(z))
    # The Jacobian is evaluated at x/z, y/z clamped to 1.3x the frustum: Gaussians far outside the
    # view would otherwise get huge, unstable footprints (gsplat's persp_proj).
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = zs * torch.minimum(torch.maximum(x / zs, -lim_x_neg), lim_x_pos)
    ty = zs * torch.minimum(torch.maximum(y / zs, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(zs)
    jac = torch.stack([fx / zs, zero, -fx * tx / zs**2, zero, fy / zs, -fy * ty / zs**2], -1)
    jac = jac.reshape(*zs.shape, 2, 3)
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)  # [C, N, 2, 2]
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], dim=-1)

    a = cov2d[..., 0, 0] + eps2d
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    c = cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    ok = in_depth & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)

    with torch.no_grad():  # the radius only selects tiles; gsplat treats it as non-differentiable
        half_tr = 0.5 * (a + c)
        v1 = half_tr + torch.sqrt(torch.clamp_min(half_tr * half_tr - det, 0.01))
        # Clamped so that the int32 cast cannot overflow (to a negative radius) for enormous footprints.
        radius = torch.ceil(3.0 * torch.sqrt(v1.clamp_min(0.0))).clamp_max(float(2**30))
        u, v = means2d[..., 0], means2d[..., 1]
        on_screen = (u + radius > 0) & (u - radius < width) & (v + radius > 0) & (v - radius < height)
        radii = torch.where(ok & on_screen, radius, torch.zeros_like(radius)).to(torch.int32)
    return Projected(means2d=means2d, conics=conics, depths=z, radii=radii)


# --------------------------------------------------------------------------- tile lists
@torch.no_grad()
def intersect_tiles(projected: Projected, width: int, height: int, tile_size: int = TILE_SIZE) -> TileLists:
    """List, for every tile of every camera, the Gaussians whose radius box touches it, front to back.

    The box is gsplat's: tiles ``floor((u - r) / s) .. ceil((u + r) / s) - 1`` (likewise in v),
    clamped to the image. Ties in depth keep the Gaussians' order in memory, as gsplat's stable
    radix sort does.
    """
    c_num, n_num = projected.radii.shape
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    device = projected.means2d.device
    radii = projected.radii.reshape(-1)
    vis = torch.nonzero(radii > 0).squeeze(1)  # flat c * N + n
    # Same arithmetic and precision as gsplat's kernel, so boundary cases round the same way.
    mean = projected.means2d.detach().reshape(-1, 2)[vis] / tile_size
    rad = radii[vis].to(mean.dtype)[:, None] / tile_size
    lo = torch.floor(mean - rad).clamp_min(0).long()
    hi = torch.ceil(mean + rad).long()
    lo[:, 0].clamp_(max=tiles_x), lo[:, 1].clamp_(max=tiles_y)
    hi[:, 0].clamp_(0, tiles_x), hi[:, 1].clamp_(0, tiles_y)
    span = (hi - lo).clamp_min(0)
    n_tiles = span[:, 0] * span[:, 1]

    # Enumerate (gaussian, tile) pairs: the k-th pair of a Gaussian covers tile lo + (k % sx, k // sx).
    owner = torch.repeat_interleave(torch.arange(vis.numel(), device=device), n_tiles)
    first = torch.cumsum(n_tiles, 0) - n_tiles
    k = torch.arange(owner.numel(), device=device) - first[owner]
    sx = span[owner, 0]
    tx = lo[owner, 0] + k % sx
    ty = lo[owner, 1] + torch.div(k, sx, rounding_mode="floor")
    cam = torch.div(vis[owner], n_num, rounding_mode="floor")
    tile = (cam * tiles_y + ty) * tiles_x + tx

    # Depth rank of every visible Gaussian (stable: equal depths keep memory order).
    depth = projected.depths.detach().reshape(-1)[vis]
    rank = torch.empty_like(vis)
    rank[torch.sort(depth, stable=True).indices] = torch.arange(vis.numel(), device=device)

    counts_all = torch.bincount(tile, minlength=c_num * tiles_y * tiles_x)
    tile_order = torch.sort(counts_all, descending=True, stable=True).indices
    used = int((counts_all > 0).sum())
    tile_pos = torch.empty_like(tile_order)
    tile_pos[tile_order] = torch.arange(tile_order.numel(), device=device)
    key = tile_pos[tile] * max(vis.numel(), 1) + rank[owner]
    order = torch.sort(key).indices
    counts = counts_all[tile_order[:used]]
    offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return TileLists(
        tile_ids=tile_order[:used],
        counts=counts,
        offsets=offsets,
        gaussian_ids=vis[owner[order]],
        tiles_x=tiles_x,
        tiles_y=tiles_y,
    )


# --------------------------------------------------------------------------- compositing
def _pixel_offsets(tile_size: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates relative to the tile centre, ``[P]`` each, row-major.

    Pixel centres sit at +0.5 (gsplat's convention); measuring from the tile centre keeps the
    moment expansion in backward well conditioned in float32.
    """
    r = torch.arange(tile_size, device=like.device, dtype=like.dtype) + (0.5 - 0.5 * tile_size)
    py, px = torch.meshgrid(r, r, indexing="ij")
    return px.reshape(-1), py.reshape(-1)


@functools.lru_cache(maxsize=None)
def _below(value: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` number below ``value`` (so ``x > _below(v)`` is ``x >= v`` in ``dtype``)."""
    v = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(v, torch.tensor(-math.inf, dtype=dtype)))


@torch.no_grad()
def _alpha_trans(m: Tensor, con: Tensor, op: Tensor, log_t: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Blending alphas of one block of depth-sorted Gaussians, with gsplat's skip and stop rules.

    Args:
        m, con, op: ``[T, B, 2]``, ``[T, B, 3]``, ``[T, B]`` tile-centred positions, conics, opacities.
        log_t: ``[T, P]`` log transmittance in front of the block (``-inf`` once a pixel is done).
        px, py: ``[P]`` pixel centres relative to the tile centre.

    Returns:
        ``alpha [T, P, B]`` (0 where skipped), ``trans [T, P, B]`` transmittance in front of each
        Gaussian (0 from the Gaussian that ends the pixel on, so ``alpha * trans`` is the blending
        weight), and the ``[T, P]`` log transmittance behind the block (``-inf`` when done).
    """
    # In place and threshold_ (no boolean masks) where possible: these are the renderer's largest
    # tensors, and on CPU fresh allocations and masked_fill cost more than the arithmetic.
    dx = px[None, :, None] - m[:, None, :, 0]  # [T, P, B]
    dy = py[None, :, None] - m[:, None, :, 1]
    a, b, c = (con[:, None, :, i] for i in range(3))
    sigma = b * dy  # -> a dx^2 / 2 + b dx dy + c dy^2 / 2
    sigma.addcmul_(0.5 * a, dx).mul_(dx).addcmul_(dy.square_(), 0.5 * c)
    # sigma < 0 (gsplat skips it) -> +inf -> alpha 0; then alpha < 1/255 -> 0.
    F.threshold_(sigma, _below(0.0, sigma.dtype), math.inf)
    alpha = torch.exp(sigma.neg_()).mul_(op[:, None, :]).clamp_max_(ALPHA_MAX)
    F.threshold_(alpha, _below(ALPHA_MIN, alpha.dtype), 0.0)
    log1m = torch.log1p(alpha.neg())
    log_t_after = torch.cumsum(log1m, dim=-1).add_(log_t[..., None])
    # Transmittance never increases along the list, so "stop before the first Gaussian whose
    # next_T <= T_MIN" (gsplat) is "keep the Gaussians whose next_T > T_MIN"; the others get
    # log transmittance -inf, hence zero weight here and in every later block.
    F.threshold_(log_t_after, _LOG_T_MIN, -math.inf)
    trans = log_t_after.sub(log1m).exp_()
    return alpha, trans, log_t_after[..., -1]


@dataclass
class _Block:
    """Bookkeeping of one front-to-back block of a compositing chunk (kept for backward)."""

    rows: Tensor  # [Ta] tiles of the chunk still rendering at this block
    k0: int
    k1: int
    log_t: Tensor  # [Ta, P] log transmittance in front of the block
    saved: Optional[tuple[Tensor, Tensor]]  # (alpha, trans) kept from forward, or None: recompute


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back compositing of depth-sorted Gaussians over dense tile blocks.

    The Gaussian lists are walked in blocks of ``block`` entries; a tile leaves the walk once all
    its pixels have stopped (gsplat's early termination), which skips most of a dense list.
    Backward follows gsplat's ``rasterize_to_pixels_bwd``: with ``g_k = col_k . dL/dout + dL/dA``,
    ``dL/dalpha_k = T_k g_k - (sum_{j>k} w_j g_j) / (1 - alpha_k)``; clamped alphas pass no gradient.
    Blocks are visited back to front carrying ``sum_{j in later blocks} w_j g_j`` per pixel.
    """

    # torch.autograd.Function.forward receives the kernel's inputs positionally.
    @staticmethod
    def forward(ctx, m, con, op, col, counts, tile_size, block, save_budget):  # type: ignore[override]
        n_rows, k_max = op.shape
        px, py = _pixel_offsets(tile_size, m)
        p = px.numel()
        out = col.new_zeros(n_rows, p, col.shape[-1])
        acc = col.new_zeros(n_rows, p)
        log_t = col.new_zeros(n_rows, p)
        rows = torch.arange(n_rows, device=op.device)
        blocks: list[_Block] = []
        for k0 in range(0, k_max, block):
            rows = rows[counts[rows] > k0]
            if rows.numel() == 0:
                break
            k1 = min(k_max, k0 + block)
            lt0 = log_t[rows]
            alpha, trans, lt1 = _alpha_trans(m[rows, k0:k1], con[rows, k0:k1], op[rows, k0:k1], lt0, px, py)
            w = alpha * trans
            out.index_add_(0, rows, torch.bmm(w, col[rows, k0:k1]))
            acc.index_add_(0, rows, w.sum(dim=-1))
            log_t[rows] = lt1
            # Keep (alpha, trans) for backward while the memory budget lasts; recompute the rest.
            keep = save_budget[0] >= 2 * alpha.numel()
            if keep:
                save_budget[0] -= 2 * alpha.numel()
            blocks.append(_Block(rows, k0, k1, lt0, (alpha, trans) if keep else None))
            rows = rows[(lt1 > _LOG_T_MIN).any(dim=-1)]
        ctx.save_for_backward(m, con, op, col)
        ctx.blocks, ctx.tile_size = blocks, tile_size
        return out, acc

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_acc):  # type: ignore[override]
        m, con, op, col = ctx.saved_tensors
        px, py = _pixel_offsets(ctx.tile_size, m)
        mono = torch.stack([torch.ones_like(px), px, py, px * px, px * py, py * py])  # [6, P]
        v_m, v_con, v_op, v_col = (torch.zeros_like(t) for t in (m, con, op, col))
        later = g_acc.new_zeros(g_acc.shape)  # sum over later blocks of w * g, per pixel
        inv_op = torch.where(op > 0, 1.0 / op, torch.zeros_like(op))
        for blk in reversed(ctx.blocks):
            rows, sl = blk.rows, slice(blk.k0, blk.k1)
            mb, cb, ob, colb = m[rows, sl], con[rows, sl], op[rows, sl], col[rows, sl]
            if blk.saved is not None:
                alpha, trans = blk.saved
            else:
                alpha, trans, _ = _alpha_trans(mb, cb, ob, blk.log_t, px, py)
            go = g_out[rows]
            w = alpha * trans
            v_col[rows, sl] = torch.bmm(w.transpose(1, 2), go)
            g = torch.bmm(go, colb.transpose(1, 2)).add_(g_acc[rows][..., None])
            s = w.mul_(g)
            total = s.sum(dim=-1).add_(later[rows])
            after = torch.cumsum(s, dim=-1).neg_().add_(total[..., None])  # sum_{j > k} w_j g_j
            v_alpha = (trans * g).sub_(after.div_(1.0 - alpha))
            later[rows] = total
            # q = dL/dalpha * alpha = dL/d(opacity) * opacity; zero where alpha is clamped or skipped.
            q = v_alpha.mul_(alpha)
            if bool((ob > ALPHA_MAX).any()):  # alpha = min(0.999, o * vis) clamps only when o > 0.999
                q.masked_fill_(alpha >= ALPHA_MAX, 0.0)
            # Moments of q over the tile's pixels give every per-Gaussian sum in one matmul.
            q0, qx, qy, qxx, qxy, qyy = torch.matmul(mono, q).unbind(1)  # each [Ta, B]
            mx, my = mb[..., 0], mb[..., 1]
            # sum_p q dx etc. with dx = px - mx, expanded (tile-centred coordinates keep it well conditioned)
            sdx, sdy = qx - mx * q0, qy - my * q0
            sdxx = qxx - 2 * mx * qx + mx * mx * q0
            sdxy = qxy - mx * qy - my * qx + mx * my * q0
            sdyy = qyy - 2 * my * qy + my * my * q0
            a, b, c = cb.unbind(-1)
            # dL/dsigma = -q per pixel; dsigma/dmx = -(a dx + b dy), dsigma/da = dx^2 / 2, ...
            v_m[rows, sl] = torch.stack([a * sdx + b * sdy, b * sdx + c * sdy], dim=-1)
            v_con[rows, sl] = -torch.stack([0.5 * sdxx, sdxy, 0.5 * sdyy], dim=-1)
            v_op[rows, sl] = q0 * inv_op[rows, sl]
        return v_m, v_con, v_op, v_col, None, None, None, None


# The tile tensors rasterize_torch packs plus the block and memory settings of the autograd function.
def composite_tiles(
    m: Tensor,
    con: Tensor,
    op: Tensor,
    col: Tensor,
    counts: Tensor,
    *,
    tile_size: int = TILE_SIZE,
    block: int = DEFAULT_BLOCK,
    save_budget: Optional[list[int]] = None,
) -> tuple[Tensor, Tensor]:
    """Composite one chunk of tiles whose Gaussian lists are padded to a common length ``K``.

    Args:
        m: ``[T, K, 2]`` Gaussian centres in pixels relative to each tile's centre, front to back.
        con: ``[T, K, 3]`` conics ``(a, b, c)``.
        op: ``[T, K]`` opacities (0 for padding).
        col: ``[T, K, D]`` values to blend.
        counts: ``[T]`` true list length of every tile (entries beyond it are padding).
        tile_size: tile side ``S``; ``P = S * S`` pixels, row-major.
        block: Gaussians per front-to-back step; tiles whose pixels are all done leave early.
        save_budget: one-element list, the number of floats forward may keep for backward instead
            of recomputing; decremented in place (shared across chunks). None keeps nothing.

    Returns:
        ``[T, P, D]`` blended values and ``[T, P]`` accumulated alpha.
    """
    return _CompositeTiles.apply(m, con, op, col, counts, tile_size, block, save_budget if save_budget is not None else [0])


def _dense_rows(lists: TileLists, offsets: list[int], start: int, stop: int, sentinel: int) -> Tensor:
    """``[stop - start, K]`` Gaussian ids of tiles ``start..stop`` in front-to-back order, padded with ``sentinel``
    (``K``: the longest of them, tile ``start``, as tiles are sorted by count)."""
    k_max = int(lists.counts[start])
    seg = lists.gaussian_ids[offsets[start] : offsets[stop]]
    row = torch.repeat_interleave(torch.arange(stop - start, device=seg.device), lists.counts[start:stop])
    pos = torch.arange(seg.numel(), device=seg.device) - (lists.offsets[start:stop] - offsets[start])[row]
    idx = torch.full((stop - start, k_max), sentinel, dtype=torch.long, device=seg.device)
    idx[row, pos] = seg
    return idx


# gsplat's rasterize_to_pixels arguments (the pure-torch reference of it) plus its memory bounds.
def rasterize_torch(
    projected: Projected,
    opacities: Tensor,
    colors: Tensor,
    width: int,
    height: int,
    *,
    tile_size: int = TILE_SIZE,
    block: int = DEFAULT_BLOCK,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    save_elements: int = DEFAULT_SAVE_ELEMENTS,
) -> tuple[Tensor, Tensor]:
    """Rasterize projected Gaussians, as gsplat's ``rasterize_to_pixels`` (no background).

    Args:
        projected: output of :func:`project_gaussians` for ``C`` cameras and ``N`` Gaussians.
        opacities: ``[N]`` in [0, 1].
        colors: ``[C, N, D]`` per-camera values to blend.
        width, height: image size.
        tile_size: tile side in pixels.
        block: Gaussians per front-to-back compositing step.
        chunk_elements: bound on ``tiles * pixels * block`` per step; peak temporary memory is
            about ten float tensors of this size.
        save_elements: floats that forward may keep for backward (beyond it, backward recomputes).

    Returns:
        ``[C, H, W, D]`` blended values and ``[C, H, W, 1]`` alpha.
    """
    c_num, n_num = projected.radii.shape
    d = colors.shape[-1]
    lists = intersect_tiles(projected, width, height, tile_size)
    p = tile_size * tile_size
    # One zero-opacity row at index C * N pads the dense blocks.
    pad = lambda t: torch.cat([t, t.new_zeros(1, *t.shape[1:])])  # noqa: E731
    means2d = pad(projected.means2d.reshape(-1, 2))
    conics = pad(projected.conics.reshape(-1, 3))
    opac = pad(opacities.expand(c_num, n_num).reshape(-1))
    cols = pad(colors.reshape(-1, d))
    sentinel = c_num * n_num

    rest = lists.tile_ids % (lists.tiles_y * lists.tiles_x)
    origin = torch.stack([rest % lists.tiles_x, torch.div(rest, lists.tiles_x, rounding_mode="floor")], -1)
    centre = (origin * tile_size + 0.5 * tile_size).to(means2d.dtype)

    offsets = lists.offsets.tolist()
    rows_per_chunk = max(1, chunk_elements // (p * block))
    budget = [save_elements if torch.is_grad_enabled() else 0]
    outs, alphas = [], []
    for start in range(0, lists.counts.numel(), rows_per_chunk):
        stop = min(lists.counts.numel(), start + rows_per_chunk)
        idx = _dense_rows(lists, offsets, start, stop, sentinel)
        out, alpha = composite_tiles(
            means2d[idx] - centre[start:stop, None, :],
            conics[idx],
            opac[idx],
            cols[idx],
            lists.counts[start:stop],
            tile_size=tile_size,
            block=block,
            save_budget=budget,
        )
        outs.append(out)
        alphas.append(alpha)

    blended = colors.new_zeros(c_num * lists.tiles_y * lists.tiles_x, p, d + 1)
    if outs:
        packed = torch.cat([torch.cat(outs), torch.cat(alphas)[..., None]], dim=-1)
        blended = blended.index_copy(0, lists.tile_ids, packed)
    else:
        # Nothing visible: keep the inputs in the graph so backward yields zeros, as gsplat does.
        blended = blended + 0.0 * (means2d.sum() + conics.sum() + opac.sum() + cols.sum())
    img = blended.reshape(c_num, lists.tiles_y, lists.tiles_x, tile_size, tile_size, d + 1)
    img = img.permute(0, 1, 3, 2, 4, 5).reshape(c_num, lists.tiles_y * tile_size, lists.tiles_x * tile_size, d + 1)
    img = img[:, :height, :width]
    return img[..., :d], img[..., d:]
