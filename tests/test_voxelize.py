"""Tests of the semantics-aware voxel merge against a slow Python-loop reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ff3r_ns.core.cameras import Cameras, intrinsics_matrix
from ff3r_ns.core.gaussians import Gaussians
from ff3r_ns.core.voxelize import VoxelConfig, estimate_scene_scale, group_purity, voxel_ids, voxelize

FIELDS = ("means", "quats", "scales", "opacities", "sh", "features", "confidence")


# --------------------------------------------------------------------------- reference
def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm().clamp_min(1e-12)


def reference_groups(g: Gaussians, cfg: VoxelConfig, scale: float, prototypes=None) -> list[list[int]]:
    """Loop over Gaussians, voxels and groups: the obvious definition of the assignment."""
    size = cfg.voxel_size * scale
    op = torch.round if cfg.rounding == "round" else torch.floor
    voxels: dict[tuple[int, ...], list[int]] = {}
    for i in range(g.num):
        key = tuple(int(v) for v in op(g.means[i].detach() / size))
        voxels.setdefault(key, []).append(i)
    groups: list[list[int]] = []
    for idx in voxels.values():
        if not cfg.semantic:
            groups.append(idx)
        elif prototypes is not None:
            by_class: dict[int, list[int]] = {}
            for i in idx:
                cos = [float(_unit(g.features[i].detach()) @ _unit(p)) for p in prototypes]
                by_class.setdefault(max(range(len(cos)), key=lambda c: cos[c]), []).append(i)
            groups.extend(by_class.values())
        else:
            remaining = sorted(idx, key=lambda i: (-float(g.confidence[i].detach()), i))
            for _ in range(cfg.max_rounds):
                if not remaining:
                    break
                lead = _unit(g.features[remaining[0]].detach())
                grp = [i for i in remaining if i == remaining[0] or float(_unit(g.features[i].detach()) @ lead) >= cfg.cos_threshold]
                groups.append(grp)
                remaining = [i for i in remaining if i not in grp]
            groups.extend([i] for i in remaining)
    return groups


def reference_merge(g: Gaussians, members: list[int], cfg: VoxelConfig) -> dict[str, torch.Tensor]:
    """Merge one group with per-member loops (differentiable)."""
    conf = [g.confidence[i] for i in members]
    logits = list(conf)
    if cfg.semantic and cfg.beta != 0:
        fh = [_unit(g.features[i]) for i in members]
        centre = _unit(sum(fh))
        logits = [c + cfg.beta * (f @ centre) for c, f in zip(conf, fh)]
    top = max(float(v.detach()) for v in logits)
    ex = [torch.exp(v - top) for v in logits]
    w = [e / sum(ex) for e in ex]
    lead = max(range(len(members)), key=lambda k: (float(logits[k].detach()), -k))
    qs = [_unit(g.quats[i]) for i in members]
    out = {
        "means": sum(wk * g.means[i] for wk, i in zip(w, members)),
        "quats": _unit(sum(wk * (q if float(q.detach() @ qs[lead].detach()) >= 0 else -q) for wk, q in zip(w, qs))),
        "scales": torch.exp(sum(wk * torch.log(g.scales[i]) for wk, i in zip(w, members))),
        "opacities": sum(wk * g.opacities[i] for wk, i in zip(w, members)),
        "sh": sum(wk * g.sh[i] for wk, i in zip(w, members)),
        "features": sum(wk * g.features[i] for wk, i in zip(w, members)),
        "confidence": torch.log(sum(torch.exp(c) for c in conf)),
    }
    return out


def make_scene(n: int, seed: int, classes: int = 3, noise: float = 0.3, dim: int = 6) -> tuple[Gaussians, torch.Tensor]:
    """Random float64 Gaussians in a 2-unit cube with class features; returns them and the prototypes."""
    gen = torch.Generator().manual_seed(seed)
    g = Gaussians.random(n, feature_dim=dim, sh_degree=1, generator=gen).to(torch.float64)
    protos = F.normalize(torch.randn(classes, dim, generator=gen, dtype=torch.float64), dim=-1)
    labels = torch.randint(0, classes, (n,), generator=gen)
    g.features = protos[labels] + noise * torch.randn(n, dim, generator=gen, dtype=torch.float64)
    return g, protos


def _leaf_inputs(g: Gaussians) -> Gaussians:
    return g.map(lambda t: t.detach().clone().requires_grad_(True))


def _flat(g: Gaussians) -> torch.Tensor:
    return torch.cat([v.detach().reshape(g.num, -1) for _, v in g.fields() if v is not None], dim=1)


# --------------------------------------------------------------------------- vs reference
CASES = [
    ("geometry", VoxelConfig(voxel_size=0.6, semantic=False), False),
    ("leader", VoxelConfig(voxel_size=0.6, cos_threshold=0.6, beta=0.7), False),
    ("leader_one_round", VoxelConfig(voxel_size=0.8, cos_threshold=0.8, beta=1.3, max_rounds=1, rounding="floor"), False),
    ("prototypes", VoxelConfig(voxel_size=0.6, beta=0.5), True),
]


@pytest.mark.parametrize("name,cfg,use_protos", CASES, ids=[c[0] for c in CASES])
def test_matches_loop_reference_forward_and_gradients(name: str, cfg: VoxelConfig, use_protos: bool) -> None:
    g0, protos = make_scene(150, seed=1)
    g = _leaf_inputs(g0)
    prototypes = protos if use_protos else None
    out = voxelize(g, cfg, scale=1.0, prototypes=prototypes)
    groups = reference_groups(g, cfg, 1.0, prototypes)

    # Same partition: every reference group maps onto exactly one merged Gaussian.
    assert out.gaussians.num == len(groups)
    order = []
    for members in groups:
        ids = out.inverse[members].unique()
        assert ids.numel() == 1, f"members {members} split over merged ids {ids.tolist()}"
        order.append(int(ids))
    assert sorted(order) == list(range(len(groups)))
    assert max(len(m) for m in groups) >= 3  # the case really merges
    if cfg.semantic:
        assert len(groups) > out.num_voxels  # ... and really splits voxels

    ref = [reference_merge(g, m, cfg) for m in groups]
    order_t = torch.tensor(order)
    gen = torch.Generator().manual_seed(7)
    fast_loss = torch.zeros((), dtype=torch.float64)
    ref_loss = torch.zeros((), dtype=torch.float64)
    for f in FIELDS:
        fast_f = getattr(out.gaussians, f)[order_t]
        ref_f = torch.stack([r[f] for r in ref])
        torch.testing.assert_close(fast_f, ref_f, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}/{f}: {m}")
        cot = torch.randn(ref_f.shape, generator=gen, dtype=torch.float64)
        fast_loss = fast_loss + (cot * fast_f).sum()
        ref_loss = ref_loss + (cot * ref_f).sum()
    inputs = [getattr(g, f) for f in FIELDS]
    fast_grads = torch.autograd.grad(fast_loss, inputs)
    ref_grads = torch.autograd.grad(ref_loss, inputs)
    for f, a, b in zip(FIELDS, fast_grads, ref_grads):
        assert b.abs().max() > 0, f"reference gradient of {f} is zero: test does not exercise it"
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}/grad {f}: {m}")
    # Weights are a partition of unity per merged Gaussian.
    sums = torch.zeros(out.gaussians.num, dtype=torch.float64).index_add(0, out.inverse, out.weights.detach())
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- edge cases
def test_empty_input_gives_empty_set() -> None:
    out = voxelize(Gaussians.empty(feature_dim=4), VoxelConfig())
    assert out.gaussians.num == 0 and out.inverse.shape == (0,) and out.num_voxels == 0
    assert out.gaussians.feature_dim == 4


def test_single_gaussian_unchanged() -> None:
    g, _ = make_scene(1, seed=3)
    g.quats = g.quats * 3.0
    out = voxelize(g, VoxelConfig())
    assert out.gaussians.num == 1 and out.inverse.tolist() == [0]
    for f in FIELDS:
        expected = F.normalize(g.quats, dim=-1) if f == "quats" else getattr(g, f)
        torch.testing.assert_close(getattr(out.gaussians, f), expected, rtol=1e-14, atol=1e-14)


def test_all_in_one_voxel_geometry_only() -> None:
    g, _ = make_scene(20, seed=4)
    out = voxelize(g, VoxelConfig(voxel_size=100.0, semantic=False), scale=1.0)
    w = torch.softmax(g.confidence, dim=0)
    assert out.gaussians.num == 1 and out.num_voxels == 1
    torch.testing.assert_close(out.gaussians.means[0], (w[:, None] * g.means).sum(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.gaussians.confidence[0], torch.logsumexp(g.confidence, 0), rtol=1e-12, atol=1e-12)
    assert torch.allclose(out.gaussians.quats.norm(dim=-1), torch.ones(1, dtype=torch.float64))


def test_opposite_quaternions_do_not_cancel() -> None:
    g, _ = make_scene(2, seed=5)
    g.means = torch.zeros_like(g.means)
    q = F.normalize(torch.tensor([0.3, -0.5, 0.7, 0.1], dtype=torch.float64), dim=0)
    g.quats = torch.stack([q, -q])
    out = voxelize(g, VoxelConfig(semantic=False), scale=1.0)
    assert out.gaussians.num == 1
    torch.testing.assert_close(out.gaussians.quats[0].abs(), q.abs(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_confidence_rejected(bad: float) -> None:
    g, _ = make_scene(10, seed=6)
    g.confidence[2] = bad
    g.confidence[7] = bad
    with pytest.raises(ValueError, match="2 of 10 confidence"):
        voxelize(g, VoxelConfig())


def test_bad_input_messages() -> None:
    g, _ = make_scene(4, seed=6)
    batched = g.map(lambda t: t[None])
    with pytest.raises(ValueError, match="flatten"):
        voxelize(batched, VoxelConfig())
    no_feat = Gaussians.random(4, feature_dim=0)
    with pytest.raises(ValueError, match="semantic=False"):
        voxelize(no_feat, VoxelConfig())
    assert voxelize(no_feat, VoxelConfig(semantic=False)).gaussians.num >= 1
    with pytest.raises(ValueError, match="voxel_size"):
        VoxelConfig(voxel_size=0.0)


def test_none_confidence_means_equal_weights() -> None:
    g, _ = make_scene(12, seed=8)
    g.confidence = None
    out = voxelize(g, VoxelConfig(voxel_size=100.0, semantic=False), scale=1.0)
    assert out.gaussians.confidence is None
    torch.testing.assert_close(out.gaussians.means[0], g.means.mean(0), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- properties
def boundary_scene(seed: int, voxel: float = 0.1, per_axis: int = 40) -> tuple[Gaussians, torch.Tensor, torch.Tensor]:
    """Two classes in stripes 1.3 voxels wide on a plane, so most voxels straddle a boundary."""
    gen = torch.Generator().manual_seed(seed)
    n = per_axis * per_axis * 4
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * per_axis * voxel
    means = torch.cat([xy, torch.zeros(n, 1, dtype=torch.float64)], dim=1)
    labels = ((xy[:, 0] / (1.3 * voxel)).floor().long() % 2)
    protos = torch.eye(2, 8, dtype=torch.float64)
    g = Gaussians.random(n, feature_dim=8, generator=gen).to(torch.float64)
    g.means = means
    g.features = protos[labels] + 0.05 * torch.randn(n, 8, generator=gen, dtype=torch.float64)
    g.confidence = 0.3 * g.confidence  # views of one surface: similar confidences
    return g, labels, protos


def test_two_class_boundary_semantic_vs_geometry() -> None:
    g, labels, protos = boundary_scene(seed=9)
    geo = voxelize(g, VoxelConfig(voxel_size=0.1, semantic=False), scale=1.0)
    sem = voxelize(g, VoxelConfig(voxel_size=0.1, semantic=True), scale=1.0)
    cos = lambda f: F.normalize(f, dim=-1) @ protos.T  # noqa: E731
    # Geometry-only merging mixes the classes: many merged features are far from both prototypes.
    geo_best = cos(geo.gaussians.features).max(dim=-1).values
    assert (geo_best < 0.9).float().mean() > 0.2
    # Semantics-aware merging: every group holds one label, and its feature stays at its class.
    n_labels = torch.zeros(sem.gaussians.num, 2).index_add(0, sem.inverse, F.one_hot(labels, 2).float())
    assert ((n_labels > 0).sum(-1) == 1).all()
    group_label = n_labels.argmax(-1)
    dist = (sem.gaussians.features - protos[group_label]).norm(dim=-1)
    assert dist.max() < 0.3
    assert sem.gaussians.num < g.num / 2  # still merges a lot
    p_sem = group_purity(sem.inverse, labels, sem.gaussians.features, protos)
    p_geo = group_purity(geo.inverse, labels, geo.gaussians.features, protos)
    assert p_sem == 1.0 and p_geo < 0.97


@pytest.mark.parametrize("semantic", [False, True])
def test_permutation_invariance(semantic: bool) -> None:
    g, _ = make_scene(200, seed=10)
    cfg = VoxelConfig(voxel_size=0.6, semantic=semantic)
    perm = torch.randperm(g.num, generator=torch.Generator().manual_seed(0))
    a = voxelize(g, cfg, scale=1.0)
    b = voxelize(g[perm], cfg, scale=1.0)
    assert a.gaussians.num == b.gaussians.num
    # Same partition of the original indices ...
    part_a = {tuple(sorted(torch.nonzero(a.inverse == k).flatten().tolist())) for k in range(a.gaussians.num)}
    part_b = {tuple(sorted(perm[b.inverse == k].tolist())) for k in range(b.gaussians.num)}
    assert part_a == part_b
    # ... and the same merged set (rows sorted by their centre).
    fa, fb = _flat(a.gaussians), _flat(b.gaussians)
    ka = fa[:, 0] * 1e6 + fa[:, 1] * 1e3 + fa[:, 2]
    kb = fb[:, 0] * 1e6 + fb[:, 1] * 1e3 + fb[:, 2]
    torch.testing.assert_close(fa[ka.argsort()], fb[kb.argsort()], rtol=1e-12, atol=1e-12)


def test_merging_merged_sets_is_associative() -> None:
    """logsumexp confidences: merging at size a then 2a (nested floor lattices) == merging at 2a."""
    g, _ = make_scene(300, seed=11)
    fine = voxelize(g, VoxelConfig(voxel_size=0.25, semantic=False, rounding="floor"), scale=1.0).gaussians
    two = voxelize(fine, VoxelConfig(voxel_size=0.5, semantic=False, rounding="floor"), scale=1.0).gaussians
    one = voxelize(g, VoxelConfig(voxel_size=0.5, semantic=False, rounding="floor"), scale=1.0).gaussians
    assert two.num == one.num < fine.num
    # Means of the fine merge stay inside their fine voxel, hence in the same coarse voxel.
    ia, _ = voxel_ids(one.means, 0.5, "floor")
    order = torch.argsort(ia)
    ib, _ = voxel_ids(two.means, 0.5, "floor")
    order_b = torch.argsort(ib)
    for f in ("means", "scales", "opacities", "sh", "features", "confidence"):
        torch.testing.assert_close(getattr(two, f)[order_b], getattr(one, f)[order], rtol=1e-10, atol=1e-12)


def test_voxel_ids_large_extent_falls_back_to_rows() -> None:
    means = torch.tensor([[0.0, 0.0, 0.0], [1e7, 1e7, 1e7], [1e7, 1e7, 1e7 + 0.1], [-1e7, 3.0, 1e7]], dtype=torch.float64)
    inv, coords = voxel_ids(means, 1e-3)
    assert inv[1] != inv[2] and len(set(inv.tolist())) == 4
    torch.testing.assert_close(coords[inv].double(), torch.round(means / 1e-3))
    inv2, coords2 = voxel_ids(means, 1.0)
    assert inv2[1] == inv2[2] and coords2.shape == (3, 3)


def test_estimate_scene_scale() -> None:
    means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    centers = torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    assert float(estimate_scene_scale(means, centers)) == pytest.approx(2.0)
    assert float(estimate_scene_scale(means)) == pytest.approx(1.0)
    assert float(estimate_scene_scale(torch.zeros(0, 3))) == 1.0


# --------------------------------------------------------------------------- benchmark helpers
class StandInViews:
    """An analytic stand-in for ``ff3r_ns.data.generate.SceneViews``: cameras on a circle looking at
    a two-class floor plane (label by checkerboard), depth by ray-plane intersection."""

    def __init__(self, views: int, size: int) -> None:
        angles = torch.arange(views, dtype=torch.float64) * (2 * math.pi / views)
        w2c = []
        for a in angles.tolist():
            eye = torch.tensor([2.0 * math.cos(a), 2.0 * math.sin(a), 1.5], dtype=torch.float64)
            fwd = F.normalize(-eye, dim=0)
            right = F.normalize(torch.linalg.cross(fwd, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)), dim=0)
            down = torch.linalg.cross(fwd, right)
            r = torch.stack([right, down, fwd])
            m = torch.eye(4, dtype=torch.float64)
            m[:3, :3], m[:3, 3] = r, -r @ eye
            w2c.append(m)
        self.world_to_cam = torch.stack(w2c).float().numpy()
        f = torch.full((views,), size / (2 * math.tan(math.radians(30))))
        c = torch.full((views,), size / 2)
        self.intrinsics = intrinsics_matrix(f, f, c, c).numpy()
        cams = self.cameras()
        from ff3r_ns.core.cameras import pixel_grid

        uv = pixel_grid(size, size, dtype=torch.float64)
        rays = torch.stack([(uv[..., 0] - size / 2) / f[0].double(), (uv[..., 1] - size / 2) / f[0].double(), torch.ones(size, size, dtype=torch.float64)], -1)
        c2w = cams.cam_to_world.double()
        dirs = torch.einsum("sij,hwj->shwi", c2w[:, :3, :3], rays)
        depth = -c2w[:, None, None, 2, 3] / dirs[..., 2]  # z-depth to the plane z = 0 (rays have z_cam = 1)
        pts = c2w[:, None, None, :3, 3] + depth[..., None] * dirs
        self.depth = depth.float().numpy()
        self.labels = (1 + ((pts[..., 0] * 4).floor() + (pts[..., 1] * 4).floor()).long() % 2).to(torch.uint8).numpy()
        self.images = torch.rand(views, size, size, 3).numpy()
        self.classes = ["unlabeled", "a", "b"]

    def cameras(self) -> Cameras:
        size = int(round(self.intrinsics[0, 0, 2] * 2))
        return Cameras(torch.from_numpy(self.world_to_cam), torch.from_numpy(self.intrinsics), size, size)


def test_benchmark_pipeline_on_stand_in_scene() -> None:
    from benchmarks import voxelize as bench

    rows = {}
    for views in (4, 16):
        scene = StandInViews(views, 48)
        for semantic in (False, True):
            rows[views, semantic] = bench.measure(scene, semantic=semantic, device="cpu", voxel_size=0.05, repeats=1)
    for (views, semantic), row in rows.items():
        assert row["gaussians_in"] == views * 48 * 48
        assert 0 < row["gaussians_out"] < row["gaussians_in"]
        assert 0.0 <= row["purity"] <= 1.0 and row["merge_seconds"] > 0
    # More views of the same plane: the merged count grows much slower than the input.
    assert rows[16, False]["gaussians_out"] < 3.0 * rows[4, False]["gaussians_out"]
    assert rows[16, False]["gaussians_out"] < 0.25 * rows[16, False]["gaussians_in"]
    # Semantic grouping keeps more Gaussians (never across the checkerboard's edges) and is purer.
    assert rows[16, True]["purity"] == 1.0 and rows[16, True]["label_pure_share"] == 1.0
    assert rows[16, False]["purity"] < 0.99 and rows[16, False]["label_pure_share"] < 0.9
    assert rows[16, True]["gaussians_out"] > rows[16, False]["gaussians_out"]
    assert rows[16, True]["boundary_purity"] == 1.0 and rows[16, False]["boundary_purity"] < 0.95
    assert 0.0 < rows[16, False]["boundary_share"] < 1.0


# --------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("semantic", [False, True])
def test_gpu_matches_cpu_forward_and_gradients(semantic: bool) -> None:
    g0, _ = make_scene(2000, seed=12)
    cfg = VoxelConfig(voxel_size=0.3, semantic=semantic)
    results = []
    for device in ("cpu", "cuda"):
        g = _leaf_inputs(g0.to(device))
        out = voxelize(g, cfg, scale=1.0)
        gen = torch.Generator().manual_seed(3)
        loss = sum((torch.randn(v.shape, generator=gen, dtype=v.dtype).to(device) * v).sum() for _, v in out.gaussians.fields())
        grads = torch.autograd.grad(loss, [getattr(g, f) for f in FIELDS])
        results.append((out.inverse.cpu(), _flat(out.gaussians).cpu(), [t.cpu() for t in grads]))
    (ia, fa, ga), (ib, fb, gb) = results
    assert torch.equal(ia, ib)
    torch.testing.assert_close(fb, fa, rtol=1e-10, atol=1e-12)
    for f, a, b in zip(FIELDS, ga, gb):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-11, msg=lambda m: f"grad {f}: {m}")


# --------------------------------------------------------------------------- known answers (issue 18 item 3)
def _straddle_case() -> tuple[Gaussians, torch.Tensor, torch.Tensor]:
    """Voxel A (around the origin) straddles a class boundary: two class-0 Gaussians (confidence 0) and one
    class-1 Gaussian (confidence ln 4), so geometry-only weights are 1/6, 1/6, 4/6; voxel B (around (1, 0, 0)) holds
    three class-0 Gaussians with confidences 0, ln 2, ln 5 (weights 1/8, 2/8, 5/8). Voxel edge 1, rounding."""
    means = torch.tensor([
        [0.1, 0.0, 0.0], [-0.2, 0.1, 0.0], [0.3, -0.3, 0.2],          # voxel A
        [1.0, 0.0, 0.0], [1.2, 0.1, -0.1], [0.8, -0.2, 0.3],          # voxel B
    ], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 0, 0, 0])
    protos = torch.eye(2, 4, dtype=torch.float64)
    features = protos[labels] + torch.tensor([[0, 0, 0.1, 0], [0, 0, 0, 0.1], [0, 0, 0.1, 0.1],
                                             [0, 0, -0.1, 0], [0, 0, 0, -0.1], [0, 0, 0.05, 0]], dtype=torch.float64)
    n = len(labels)
    g = Gaussians(
        means=means,
        quats=F.normalize(torch.tensor([[1.0, 0, 0, 0.1 * i] for i in range(n)], dtype=torch.float64), dim=-1),
        scales=torch.tensor([[0.1 * (i + 1)] * 3 for i in range(n)], dtype=torch.float64),
        opacities=torch.tensor([0.2, 0.4, 0.8, 0.1, 0.5, 0.9], dtype=torch.float64),
        sh=torch.arange(n * 3, dtype=torch.float64).reshape(n, 1, 3),
        features=features,
        confidence=torch.log(torch.tensor([1.0, 1.0, 4.0, 1.0, 2.0, 5.0], dtype=torch.float64)),
    )
    return g, labels, protos


def _expected_merge(g: Gaussians, members: list[int], w: list[float]) -> dict[str, torch.Tensor]:
    wt = torch.tensor(w, dtype=torch.float64)
    wm = lambda x: (wt.view(-1, *([1] * (x.ndim - 1))) * x[members]).sum(0)  # noqa: E731
    return {"means": wm(g.means), "opacities": wm(g.opacities), "sh": wm(g.sh), "features": wm(g.features),
            "scales": torch.exp(wm(torch.log(g.scales))), "quats": F.normalize(wm(g.quats), dim=-1),
            "confidence": torch.logsumexp(g.confidence[members], 0)}


def _merged_of(out, members: list[int]) -> int:
    ids = out.inverse[members].unique()
    assert ids.numel() == 1, f"members {members} went to {ids.tolist()}"
    return int(ids)


def test_straddling_voxel_keeps_one_group_per_class_with_hand_weights() -> None:
    g, labels, protos = _straddle_case()
    sem = voxelize(g, VoxelConfig(voxel_size=1.0, semantic=True, beta=0.0), scale=1.0)
    geo = voxelize(g, VoxelConfig(voxel_size=1.0, semantic=False), scale=1.0)
    assert sem.num_voxels == geo.num_voxels == 2
    # semantic: A -> {0, 1} and {2}, B -> one group; geometry-only: A and B one group each
    assert sem.gaussians.num == 3 and geo.gaussians.num == 2
    a0, a1, b = _merged_of(sem, [0, 1]), _merged_of(sem, [2]), _merged_of(sem, [3, 4, 5])
    assert len({a0, a1, b}) == 3
    ga, gb = _merged_of(geo, [0, 1, 2]), _merged_of(geo, [3, 4, 5])
    assert ga != gb
    cases = [(sem, a0, [0, 1], [0.5, 0.5]), (sem, a1, [2], [1.0]), (sem, b, [3, 4, 5], [1 / 8, 2 / 8, 5 / 8]),
             (geo, ga, [0, 1, 2], [1 / 6, 1 / 6, 4 / 6]), (geo, gb, [3, 4, 5], [1 / 8, 2 / 8, 5 / 8])]
    for out, k, members, w in cases:
        torch.testing.assert_close(out.weights[members], torch.tensor(w, dtype=torch.float64), rtol=1e-12, atol=1e-12)
        for f, value in _expected_merge(g, members, w).items():
            torch.testing.assert_close(getattr(out.gaussians, f)[k], value, rtol=1e-12, atol=1e-12, msg=lambda m: f"{f}: {m}")
    # e.g. the semantic class-1 group is Gaussian 2 unchanged; the geometry merge of A mixes the classes
    torch.testing.assert_close(sem.gaussians.features[a1], g.features[2])
    torch.testing.assert_close(geo.gaussians.means[ga], torch.tensor([(0.1 - 0.2 + 1.2) / 6, (0.1 - 1.2) / 6, 0.8 / 6], dtype=torch.float64))
    # purity: 1 for the semantic merge; A's geometry merge has majority label 0 but lands nearest class 1
    assert group_purity(sem.inverse, labels, sem.gaussians.features, protos) == 1.0
    assert group_purity(geo.inverse, labels, geo.gaussians.features, protos) == pytest.approx(0.5)
    boundary = torch.zeros(geo.gaussians.num, dtype=torch.bool)
    boundary[ga] = True
    assert group_purity(geo.inverse, labels, geo.gaussians.features, protos, mask=boundary) == 0.0


def test_semantic_agreement_weights_follow_the_formula() -> None:
    g, _, _ = _straddle_case()
    beta = 1.5
    out = voxelize(g, VoxelConfig(voxel_size=1.0, semantic=True, beta=beta), scale=1.0)
    members = [3, 4, 5]
    fhat = F.normalize(g.features[members], dim=-1)
    centre = F.normalize(fhat.sum(0), dim=0)
    w = torch.softmax(g.confidence[members] + beta * fhat @ centre, dim=0)
    torch.testing.assert_close(out.weights[members], w, rtol=1e-12, atol=1e-12)
    k = _merged_of(out, members)
    torch.testing.assert_close(out.gaussians.means[k], (w[:, None] * g.means[members]).sum(0), rtol=1e-12, atol=1e-12)


def test_class_boundary_through_one_voxel_of_two_views() -> None:
    """Two views' pixel Gaussians of one plane, a class boundary at x = 0 through a column of voxels (the
    voxels are centred on x = 0): semantic merging keeps exactly two groups in every voxel the boundary crosses
    and one elsewhere; geometry-only merging keeps one per voxel."""
    gen = torch.Generator().manual_seed(0)
    xs = torch.arange(-1.95, 2.0, 0.1, dtype=torch.float64)  # 40 x 40 "pixels" of view 1, view 2 offset by 0.05
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    xy = torch.cat([grid, grid + 0.05]) + 0.013  # off the voxel faces (no round-half ties)
    n = xy.shape[0]
    means = torch.cat([xy, torch.zeros(n, 1, dtype=torch.float64)], -1)
    labels = (xy[:, 0] > 0).long()
    protos = F.normalize(torch.randn(2, 8, generator=gen, dtype=torch.float64), dim=-1)
    g = Gaussians.random(n, feature_dim=8, generator=gen).to(torch.float64)
    g.means = means
    g.features = protos[labels] + 0.1 * torch.randn(n, 8, generator=gen, dtype=torch.float64)
    cfg = dict(voxel_size=0.4, beta=1.0)
    sem = voxelize(g, VoxelConfig(semantic=True, **cfg), scale=1.0)
    geo = voxelize(g, VoxelConfig(semantic=False, **cfg), scale=1.0)
    voxel, coords = voxel_ids(g.means, 0.4)
    per_voxel_sem = torch.zeros(sem.num_voxels, dtype=torch.long)
    first = torch.full((sem.gaussians.num,), -1, dtype=torch.long).scatter_(0, sem.inverse, voxel)
    per_voxel_sem.index_add_(0, first, torch.ones_like(first))
    v_labels = torch.zeros(sem.num_voxels, 2, dtype=torch.float64).index_add(0, voxel, F.one_hot(labels, 2).double())
    straddles = (v_labels > 0).sum(-1) == 2
    column = coords[:, 0] == 0  # the voxels centred on x = 0, which the boundary crosses
    assert column.sum() == 11 and torch.equal(straddles, column)  # 11 voxels along y
    assert (per_voxel_sem[straddles] == 2).all() and (per_voxel_sem[~straddles] == 1).all()
    assert geo.gaussians.num == geo.num_voxels == sem.num_voxels and sem.gaussians.num == sem.num_voxels + 11
    n_labels = torch.zeros(sem.gaussians.num, 2, dtype=torch.float64).index_add(0, sem.inverse, F.one_hot(labels, 2).double())
    assert ((n_labels > 0).sum(-1) == 1).all()  # every semantic group holds one class
    assert group_purity(sem.inverse, labels, sem.gaussians.features, protos) == 1.0
    assert group_purity(geo.inverse, labels, geo.gaussians.features, protos) < 1.0
