"""Tests of the synthetic scene generator (ff3r_ns.data) and its nerfstudio-data writer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ff3r_ns.core.cameras import Cameras, opencv_w2c_to_opengl_c2w, project_points, unproject_depth
from ff3r_ns.data.generate import CLASSES, GENERATOR_VERSION, SceneSpec, SceneViews, build_scene, generate_scene, write_scene
from ff3r_ns.data.primitives import Part, Room, intersect_part, intersect_room
from ff3r_ns.data.layout import LOW_TOP, PATH_CLEARANCE, Footprint
from ff3r_ns.data.make_scene import main
from ff3r_ns.data.textures import PATTERNS, Material, albedo

W, H, S = 64, 48, 8
SMALL = dict(num_views=S, width=W, height=H)


@pytest.fixture(scope="module")
def spec() -> SceneSpec:
    return SceneSpec(seed=1, **SMALL)


@pytest.fixture(scope="module")
def views(spec: SceneSpec) -> SceneViews:
    return generate_scene(spec)


@pytest.fixture(scope="module")
def written(views: SceneViews, spec: SceneSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scene") / "room"
    write_scene(views, out, spec, num_points=500)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- primitives
def test_primitive_intersections_are_exact() -> None:
    m = Material("solid", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    o = np.array([[-5.0, 0.0, 0.0], [0.0, 0.0, 5.0], [-5.0, 0.0, 1.5], [0.0, 0.0, 0.0]])
    d = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    box = Part("box", (0, 0, 0), (1, 2, 3), 0.0, 1, m)
    t, n = intersect_part(box, o, d)
    np.testing.assert_allclose(t[:3], [4.0, 2.0, 4.0])
    np.testing.assert_allclose(n[:3], [[-1, 0, 0], [0, 0, 1], [-1, 0, 0]], atol=1e-12)
    assert np.isinf(t[3])  # a ray starting inside never "enters"
    rotated = Part("box", (0, 0, 0), (1, 1, 1), np.pi / 4, 1, m)
    t, n = intersect_part(rotated, o[:1], d[:1])
    np.testing.assert_allclose(t, [5 - np.sqrt(2)])
    np.testing.assert_allclose(np.abs(n[0, :2]), [np.sqrt(0.5)] * 2)
    cyl = Part("cylinder", (0, 0, 0), (1, 1, 1), 0.3, 1, m)
    t, n = intersect_part(cyl, o, d)
    np.testing.assert_allclose(t[:2], [4.0, 4.0])
    np.testing.assert_allclose(n[:2], [[-1, 0, 0], [0, 0, 1]], atol=1e-12)
    assert np.isinf(t[2]) and np.isinf(t[3])  # passes above the top cap; starts inside
    ell = Part("ellipsoid", (0, 0, 0), (2, 1, 1), 0.0, 1, m)
    t, n = intersect_part(ell, o[:2], d[:2])
    np.testing.assert_allclose(t, [3.0, 4.0])
    np.testing.assert_allclose(n, [[-1, 0, 0], [0, 0, 1]], atol=1e-12)
    # Non-unit directions scale t, which is how camera rays report z-depth directly.
    t2, _ = intersect_part(box, o[:1], 2 * d[:1])
    np.testing.assert_allclose(t2, [2.0])


def test_room_interior_faces() -> None:
    m = Material("solid", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    room = Room((6.0, 4.0, 3.0), (m,) * 6, (1, 1, 1, 1, 2, 3))
    o = np.tile([[0.0, 0.0, 1.0]], (4, 1))
    d = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    t, n, face = intersect_room(room, o, d)
    np.testing.assert_allclose(t, [1.0, 2.0, 3.0, 2.0])
    np.testing.assert_array_equal(face, [4, 5, 1, 2])
    np.testing.assert_allclose(n, [[0, 0, 1], [0, 0, -1], [-1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_textures_deterministic_in_range_and_seeded() -> None:
    p = np.random.default_rng(0).uniform(-2, 2, (512, 3))
    for pattern in PATTERNS:
        m = Material(pattern, (0.8, 0.3, 0.2), (0.1, 0.4, 0.7), scale=0.3, seed=5)
        a = albedo(m, p)
        assert a.shape == (512, 3) and a.min() >= 0.0 and a.max() <= 1.0
        np.testing.assert_array_equal(a, albedo(m, p))
        assert a.std(0).max() > 0.01, pattern  # every pattern varies over a 4 m cube
    noise = lambda seed: albedo(Material("noise", (1, 1, 1), (0, 0, 0), scale=0.5, seed=seed), p)  # noqa: E731
    assert np.abs(noise(1) - noise(2)).mean() > 0.05
    with pytest.raises(ValueError, match="pattern"):
        Material("marble", (1, 1, 1), (0, 0, 0))


def test_footprint_separating_axes() -> None:
    a = Footprint((0.0, 0.0), (1.0, 1.0), 0.0, (0.0, 1.0))
    assert not a.overlaps(Footprint((2.1, 0.0), (1.0, 1.0), 0.0, (0.0, 1.0)))
    # A diamond whose corner reaches x = 2.3 - sqrt(2) < 1 overlaps; its AABB test alone would too.
    assert a.overlaps(Footprint((2.3, 0.0), (1.0, 1.0), np.pi / 4, (0.0, 1.0)))
    assert not a.overlaps(Footprint((2.5, 0.0), (1.0, 1.0), np.pi / 4, (0.0, 1.0)))
    assert not a.overlaps(Footprint((0.0, 0.0), (1.0, 1.0), 0.3, (1.0, 2.0)))  # stacked, heights disjoint
    np.testing.assert_allclose(a.distance(np.array([[0.5, 0.5], [3.0, 0.0], [4.0, 5.0]])), [0.0, 2.0, 5.0])


# --------------------------------------------------------------------------- views
def test_spec_validation() -> None:
    for bad, match in [
        (dict(num_views=0), "num_views"),
        (dict(width=4), "8x8"),
        (dict(trajectory="spiral"), "trajectory"),
        (dict(fov_deg=179.0), "fov_deg"),
        (dict(arc=0.0), "arc"),
        (dict(seed=-1), "seed"),
    ]:
        with pytest.raises(ValueError, match=match):
            SceneSpec(**bad)


def test_shapes_ranges_and_intrinsics(views: SceneViews, spec: SceneSpec) -> None:
    assert views.images.shape == (S, H, W, 3) and views.images.dtype == np.float32
    assert views.depth.shape == (S, H, W) and views.depth.dtype == np.float32
    assert views.labels.shape == (S, H, W) and views.labels.dtype == np.uint8
    assert views.world_to_cam.shape == (S, 4, 4) and views.world_to_cam.dtype == np.float32
    assert views.intrinsics.shape == (S, 3, 3) and views.intrinsics.dtype == np.float32
    assert views.classes == CLASSES and CLASSES[0] == "unlabeled" and len(CLASSES) == 9
    assert 0.0 <= views.images.min() and views.images.max() <= 1.0
    assert 0.05 < views.images.mean() < 0.95
    assert views.depth.min() > 0.1 and views.depth.max() < 15.0
    assert views.labels.min() >= 1 and views.labels.max() <= 8  # a closed room: no pixel unlabelled
    k = views.intrinsics.astype(np.float64)
    np.testing.assert_allclose(k[:, 0, 0], k[:, 1, 1])
    np.testing.assert_allclose(k[:, 0, 2], W / 2)
    np.testing.assert_allclose(k[:, 1, 2], H / 2)
    np.testing.assert_allclose(np.rad2deg(2 * np.arctan(W / 2 / k[:, 0, 0])), spec.fov_deg, rtol=1e-6)
    r = views.world_to_cam[:, :3, :3].astype(np.float64)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-6)
    np.testing.assert_array_equal(views.world_to_cam[:, 3], np.broadcast_to([0, 0, 0, 1], (S, 4)))
    cams = views.cameras()
    assert isinstance(cams, Cameras) and len(cams) == S and (cams.width, cams.height) == (W, H)
    # No roll: the camera x axis (first row of R) is horizontal in the z-up world.
    np.testing.assert_allclose(r[:, 0, 2], 0.0, atol=1e-6)


def test_depth_and_labels_are_exact(views: SceneViews) -> None:
    """Unprojected pixel centres lie exactly on the surface their label names."""
    scene = views.scene
    assert scene is not None
    sx, sy, sz = scene.room.size
    pts = unproject_depth(torch.from_numpy(views.depth).double(), views.cameras().to(torch.float64)).numpy()
    lab = views.labels
    tol = 2e-5 * views.depth.max()  # float32 depth: relative rounding only
    np.testing.assert_allclose(pts[lab == 2][:, 2], 0.0, atol=tol)  # floor
    np.testing.assert_allclose(pts[lab == 3][:, 2], sz, atol=tol)  # ceiling (fixtures are "other")
    wall = pts[lab == 1]
    off_wall = np.minimum(np.abs(np.abs(wall[:, 0]) - sx / 2), np.abs(np.abs(wall[:, 1]) - sy / 2))
    assert off_wall.max() < tol
    inside = (np.abs(pts[..., 0]) <= sx / 2 + tol) & (np.abs(pts[..., 1]) <= sy / 2 + tol)
    assert inside.all() and pts[..., 2].min() > -tol and pts[..., 2].max() < sz + tol
    # Furniture, pictures and doors stand at least 1 cm off the walls.
    furn = pts[lab >= 4]
    off = np.minimum(sx / 2 - np.abs(furn[:, 0]), sy / 2 - np.abs(furn[:, 1]))
    assert furn.size and off.min() > 0.01 - tol


def test_labels_consistent_across_views(views: SceneViews) -> None:
    cams = views.cameras()
    depth = torch.from_numpy(views.depth)
    pts = unproject_depth(depth, cams)
    total_vis = 0
    for a in range(S):
        b = (a + 1) % S
        uv, z = project_points(pts[a].reshape(1, -1, 3), cams[b : b + 1])
        ui, vi = uv[0, :, 0].floor().long(), uv[0, :, 1].floor().long()
        inb = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H) & (z[0] > 0)
        zb = torch.full_like(z[0], -1.0)
        zb[inb] = depth[b][vi[inb], ui[inb]]
        vis = inb & ((zb - z[0]).abs() < 0.01 * z[0])  # the point is what view b sees at that pixel
        la = torch.from_numpy(views.labels[a]).reshape(-1)[vis]
        lb = torch.from_numpy(views.labels[b])[vi[vis], ui[vis]]
        assert vis.sum() > 0.1 * H * W, (a, b)
        assert (la == lb).float().mean() > 0.95, (a, b)
        # Lambertian shading and solid textures: the same point has (nearly) the same colour.
        ca = torch.from_numpy(views.images[a]).reshape(-1, 3)[vis]
        cb = torch.from_numpy(views.images[b])[vi[vis], ui[vis]]
        assert (ca - cb).abs().mean(1).median() < 0.03, (a, b)
        total_vis += int(vis.sum())
    assert total_vis > 0.25 * S * H * W


def test_arrays_deterministic(views: SceneViews, spec: SceneSpec) -> None:
    again = generate_scene(spec)
    for name in ("images", "depth", "labels", "world_to_cam", "intrinsics"):
        np.testing.assert_array_equal(getattr(views, name), getattr(again, name), err_msg=name)


def test_seeds_differ(views: SceneViews) -> None:
    other = generate_scene(SceneSpec(seed=2, **SMALL))
    assert np.abs(views.images - other.images).mean() > 0.05
    assert views.scene is not None and other.scene is not None
    assert views.scene.room.size != other.scene.room.size
    assert (views.labels != other.labels).mean() > 0.2


def test_more_views_sample_the_same_scene(views: SceneViews) -> None:
    denser = generate_scene(SceneSpec(seed=1, num_views=2 * S, width=W, height=H))
    assert denser.scene == views.scene
    np.testing.assert_array_equal(denser.images[::2], views.images)  # closed orbit: view i at i / S
    np.testing.assert_array_equal(denser.depth[::2], views.depth)


@pytest.mark.parametrize("trajectory", ["orbit", "walk"])
def test_trajectories_smooth_inside_and_clear(trajectory: str) -> None:
    spec = SceneSpec(seed=3, num_views=24, width=16, height=12, trajectory=trajectory)
    scene, path = build_scene(spec)
    eye, target = path.sample(path.view_params(spec.num_views))
    fwd = (target - eye) / np.linalg.norm(target - eye, axis=1, keepdims=True)
    step = np.linalg.norm(np.diff(eye, axis=0), axis=1)
    turn = np.rad2deg(np.arccos(np.clip((fwd[1:] * fwd[:-1]).sum(1), -1, 1)))
    assert step.max() < 0.7 and step.min() > 0.05, step
    assert turn.max() < 25.0, turn
    assert np.all(fwd[:, 2] < 0.1) and np.all(fwd[:, 2] > -0.5)  # about level, or slightly lowered
    sx, sy, sz = scene.room.size
    assert np.all(np.abs(eye[:, 0]) < sx / 2 - 0.5) and np.all(np.abs(eye[:, 1]) < sy / 2 - 0.5)
    assert np.all((eye[:, 2] > 1.2) & (eye[:, 2] < sz - 0.5))
    for obj in scene.objects:
        for part in obj.parts:
            lo, hi = part.bounds()
            if lo[2] > sz - 0.2:
                continue  # ceiling fixtures
            fp = Footprint(tuple((lo[:2] + hi[:2]) / 2), tuple((hi[:2] - lo[:2]) / 2), 0.0, (lo[2], hi[2]))
            if hi[2] > LOW_TOP and obj.name not in ("picture", "door"):
                # Part AABBs contain the rotated footprints, so this is a conservative check only
                # for axis-aligned parts; rotated ones get a little slack.
                slack = 0.0 if abs(np.sin(2 * part.yaw)) < 1e-6 else 0.2
                assert fp.distance(eye[:, :2]).min() >= PATH_CLEARANCE - slack, (obj.name, part)
            else:
                assert (eye[:, 2] - hi[2]).min() > 0.6 or fp.distance(eye[:, :2]).min() > 0.1
    views = generate_scene(spec)
    # Every view sees the room, not a wall in its face.
    assert np.median(views.depth.reshape(spec.num_views, -1), axis=1).min() > 1.0


def test_every_class_appears_in_default_scenes() -> None:
    for seed in range(3):
        spec = SceneSpec(seed=seed, width=48, height=48)  # default views and path; low resolution
        views = generate_scene(spec)
        present = set(np.unique(views.labels).tolist())
        assert present == set(range(1, 9)), (seed, sorted(present))


def test_objects_do_not_overlap() -> None:
    for seed in range(4):
        scene, _ = build_scene(SceneSpec(seed=seed))
        fps = []
        for i, obj in enumerate(scene.objects):
            lo, hi = obj.bounds()
            assert np.all(lo[:2] >= -np.asarray(scene.room.size[:2]) / 2 - 1e-9)
            for part in obj.parts:
                if part.kind == "box":
                    fps.append((i, Footprint(part.center[:2], part.half[:2], part.yaw, (part.center[2] - part.half[2], part.center[2] + part.half[2]))))
        for a in range(len(fps)):
            for b in range(a + 1, len(fps)):
                if fps[a][0] != fps[b][0]:
                    assert not fps[a][1].overlaps(fps[b][1]), (seed, scene.objects[fps[a][0]].name, scene.objects[fps[b][0]].name)


# --------------------------------------------------------------------------- files
def test_files_deterministic(views: SceneViews, spec: SceneSpec, written: Path, tmp_path: Path) -> None:
    write_scene(generate_scene(spec), tmp_path / "again", spec, num_points=500)
    a, b = _files(written), _files(tmp_path / "again")
    assert sorted(a) == sorted(b)
    assert len(a) == 3 * S + 2
    for name in a:
        assert a[name] == b[name], name


def test_transforms_json_layout(written: Path, views: SceneViews, spec: SceneSpec) -> None:
    meta = json.loads((written / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV" and meta["ply_file_path"] == "points.ply"
    assert (meta["w"], meta["h"]) == (W, H) and meta["classes"] == CLASSES
    assert meta["fl_x"] == pytest.approx(float(views.intrinsics[0, 0, 0]))
    rec = meta["ff3r_scene"]
    assert rec["seed"] == spec.seed and rec["num_views"] == S and rec["generator_version"] == GENERATOR_VERSION
    assert rec["trajectory"] == "orbit" and rec["fov_deg"] == spec.fov_deg
    assert len(meta["frames"]) == S
    f0 = meta["frames"][0]
    assert (f0["file_path"], f0["depth_file_path"], f0["semantic_path"]) == (
        "images/frame_00000.png", "depth/frame_00000.png", "labels/frame_00000.png"
    )  # fmt: skip
    for i, frame in enumerate(meta["frames"]):
        lab = np.array(Image.open(written / frame["semantic_path"]))
        assert lab.dtype == np.uint8
        np.testing.assert_array_equal(lab, views.labels[i])
        depth = Image.open(written / frame["depth_file_path"])
        assert depth.mode in ("I;16", "I;16B", "I")
        np.testing.assert_allclose(np.array(depth) / 1000.0, views.depth[i], atol=0.5e-3 + 1e-6)
        c2w = np.array(frame["transform_matrix"])
        # OpenGL: the camera looks down its -z axis, so -c2w[:, 2] is the OpenCV forward axis.
        np.testing.assert_allclose(-c2w[:3, 2], views.world_to_cam[i, 2, :3], atol=1e-6)


def test_ply_format(written: Path, views: SceneViews) -> None:
    from plyfile import PlyData

    ply = PlyData.read(str(written / "points.ply"))
    assert not ply.text and ply.byte_order == "<"
    v = ply["vertex"]
    assert [p.name for p in v.properties] == ["x", "y", "z", "red", "green", "blue"]
    assert [v.data.dtype[k].kind + str(v.data.dtype[k].itemsize) for k in range(6)] == ["f4"] * 3 + ["u1"] * 3
    assert len(v.data) == 500
    xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    assert views.scene is not None
    sx, sy, sz = views.scene.room.size
    assert np.all(np.abs(xyz[:, 0]) <= sx / 2 + 1e-4) and np.all(np.abs(xyz[:, 1]) <= sy / 2 + 1e-4)
    assert xyz[:, 2].min() > -1e-4 and xyz[:, 2].max() < sz + 1e-4
    # Points are the pixels' own surface points: they reproject into some view with matching depth.
    uv, z = project_points(torch.from_numpy(xyz)[None].expand(S, -1, -1), views.cameras())
    ui, vi = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inb = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H) & (z > 0)
    depth = torch.from_numpy(views.depth)
    seen = torch.zeros(len(xyz), dtype=torch.bool)
    for s in range(S):
        m = inb[s]
        dz = (depth[s][vi[s][m], ui[s][m]] - z[s][m]).abs()
        seen[m] |= dz < 1e-3
    assert seen.all()


def test_nerfstudio_dataparser_reads_it_back(written: Path, views: SceneViews) -> None:
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
    from nerfstudio.data.utils.data_utils import get_depth_image_from_path

    try:
        import open3d  # noqa: F401  # nerfstudio reads points.ply through open3d

        has_open3d = True
    except ImportError:  # e.g. libusb-1.0 missing on a fresh Debian; the PLY is checked in test_ply_format
        has_open3d = False
    config = NerfstudioDataParserConfig(
        data=written, orientation_method="none", center_method="none", auto_scale_poses=False,
        scale_factor=1.0, load_3D_points=has_open3d,
    )  # fmt: skip
    out = config.setup().get_dataparser_outputs("train")
    n = len(out.image_filenames)
    assert n == S  # 8 frames: nerfstudio's 0.9 split keeps them all for training
    cams = out.cameras
    assert torch.all(cams.width == W) and torch.all(cams.height == H)
    k = views.intrinsics[0]
    assert torch.allclose(cams.fx, torch.tensor(float(k[0, 0]))) and torch.allclose(cams.cy, torch.tensor(H / 2))
    ours = opencv_w2c_to_opengl_c2w(torch.from_numpy(views.world_to_cam).double())[:, :3].float()
    torch.testing.assert_close(cams.camera_to_worlds, ours, atol=1e-5, rtol=0)
    assert torch.allclose(out.dataparser_transform, torch.eye(4)[:3]) and out.dataparser_scale == 1.0
    for i, fname in enumerate(out.image_filenames):
        img = np.array(Image.open(fname))
        np.testing.assert_array_equal(img, np.round(views.images[i] * 255).astype(np.uint8))
        depth = get_depth_image_from_path(out.metadata["depth_filenames"][i], H, W, out.metadata["depth_unit_scale_factor"])
        assert depth.shape == (H, W, 1)
        assert (depth[..., 0].numpy() - views.depth[i]).__abs__().max() <= 1e-3
    if has_open3d:
        pts = out.metadata["points3D_xyz"]
        assert pts.shape == (500, 3)
        from plyfile import PlyData

        v = PlyData.read(str(written / "points.ply"))["vertex"]
        np.testing.assert_allclose(pts.numpy(), np.stack([v["x"], v["y"], v["z"]], 1), atol=1e-5)
        np.testing.assert_array_equal(out.metadata["points3D_rgb"].numpy(), np.stack([v["red"], v["green"], v["blue"]], 1))


def test_write_refuses_non_empty_folder_and_overwrites_cleanly(tmp_path: Path) -> None:
    small = SceneSpec(seed=4, num_views=4, width=16, height=12)
    out = tmp_path / "scene"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_scene(generate_scene(small), out, small, num_points=10)
    write_scene(generate_scene(small), out, small, num_points=10, overwrite=True)
    fewer = SceneSpec(seed=4, num_views=2, width=16, height=12)
    write_scene(generate_scene(fewer), out, fewer, num_points=10, overwrite=True)
    assert len(list((out / "images").iterdir())) == 2  # no stale frames of the larger scene
    assert (out / "notes.txt").read_text() == "keep me"  # foreign files are left alone


# --------------------------------------------------------------------------- CLI
def test_cli_help_documents_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for opt in ("--seed", "--views", "--width", "--height", "--trajectory", "--fov-deg", "--arc", "--no-shadows",
                "--num-points", "--overwrite"):
        assert opt in text


def test_cli_in_process_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tmp_path / "s"), "--seed", "2", "--views", "2", "--width", "16", "--height", "12", "--trajectory", "walk"]
    path = main(args)
    assert json.loads(path.read_text())["ff3r_scene"]["trajectory"] == "walk"
    with pytest.raises(FileExistsError):
        main(args)
    main(args + ["--overwrite", "--num-points", "7"])
    assert "2 views, 16x12, walk, seed 2" in capsys.readouterr().out


def test_cli_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "ff3r_ns.data.make_scene", str(out), "--seed", "1", "--views", "3", "--width", "24", "--height", "16"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "3 views, 24x16" in run.stdout and str(out / "transforms.json") in run.stdout
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 3
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
