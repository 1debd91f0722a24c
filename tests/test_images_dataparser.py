"""``images-data``: unposed folders of mixed images and videos become one-size RGB frames with placeholder cameras."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ff3r_ns.nerfstudio.images_dataparser import (
    FULL_FRAME_DIAGONAL_MM,
    ImagesDataError,
    ImagesDataParserConfig,
    ImagesDataWarning,
    looks_unposed,
    natural_key,
    select_frames,
)


def parse(data: Path, cache: Path, split: str = "train", **kwargs):
    config = ImagesDataParserConfig(data=data, cache_dir=cache, **kwargs)
    return config.setup().get_dataparser_outputs(split=split)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def hfov_focal(width: int, deg: float = 60.0) -> float:
    return width / 2 / math.tan(math.radians(deg) / 2)


def write_mixed_folder(folder: Path) -> None:
    folder.mkdir()
    Image.new("RGB", (16, 12), (10, 200, 30)).save(folder / "img1.png")
    Image.new("L", (16, 12), 77).save(folder / "img2.png")  # grayscale
    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = 255
    rgba[:, :8, 3] = 0  # left half transparent
    Image.fromarray(rgba, "RGBA").save(folder / "img10.png")
    Image.new("RGB", (16, 12), (240, 240, 240)).save(folder / "img3.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image")


def test_mixed_folder(tmp_path, capsys):
    data = tmp_path / "photos"
    write_mixed_folder(data)
    before = snapshot(data)
    out = parse(data, tmp_path / "cache")
    md = out.metadata
    assert md["poses_are_placeholders"] is True
    assert md["source_names"] == ["img1.png", "img2.png", "img3.jpg", "img10.png"]  # natural order
    assert md["frame_indices"] == [0, 1, 2, 3]
    assert len(out.image_filenames) == 4
    arrays = [load(p) for p in out.image_filenames]
    assert all(a.shape == (12, 16, 3) for a in arrays)
    assert (arrays[0] == (10, 200, 30)).all()
    assert (arrays[1] == 77).all()  # grayscale replicated exactly
    assert np.abs(arrays[2].astype(int) - 240).max() <= 2  # JPEG
    assert (arrays[3][:, :8] == 0).all() and (arrays[3][:, 8:] == (200, 100, 50)).all()  # composited on black
    log = capsys.readouterr().out
    assert "grayscale" in log and "img2.png" in log and "replicated to RGB" in log
    assert "composited on black" in log
    # Placeholder cameras: identity poses, 60 deg horizontal FoV guess, centred principal point.
    cams = out.cameras
    assert torch.equal(cams.camera_to_worlds, torch.eye(4)[:3].expand(4, 3, 4))
    assert torch.allclose(cams.fx, torch.full((4, 1), hfov_focal(16)))
    assert torch.equal(cams.cx, torch.full((4, 1), 8.0)) and torch.equal(cams.height, torch.full((4, 1), 12))
    # Nothing written into the dataset folder; frames live in the cache.
    assert snapshot(data) == before
    assert all((tmp_path / "cache") in p.parents for p in out.image_filenames)


def test_cache_reused_and_never_inside_data(tmp_path, capsys):
    data = tmp_path / "photos"
    write_mixed_folder(data)
    first = parse(data, tmp_path / "cache")
    capsys.readouterr()
    second = parse(data, tmp_path / "cache", split="test")  # eval_mode "all": the same frames
    assert "from the cache" in capsys.readouterr().out
    assert second.image_filenames == first.image_filenames
    with pytest.raises(ImagesDataError, match="never writes there"):
        parse(data, data / "cache")


def test_exif_rotation_and_focal(tmp_path):
    data = tmp_path / "exif"
    data.mkdir()
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, :8] = (255, 0, 0)  # stored: left half red, right half blue
    arr[:, 8:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 deg clockwise to display
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    Image.fromarray(arr).save(data / "a.jpg", exif=exif.tobytes(), quality=98)
    Image.fromarray(arr).transpose(Image.Transpose.ROTATE_270).save(data / "b.png")  # upright already, no EXIF
    out = parse(data, tmp_path / "cache")
    a, b = (load(p).astype(int) for p in out.image_filenames)
    assert a.shape == (16, 8, 3)  # portrait after the EXIF rotation
    assert a[1, 4, 0] > 200 and a[1, 4, 2] < 60  # red on top
    assert a[-2, 4, 2] > 200 and a[-2, 4, 0] < 60  # blue at the bottom
    assert np.abs(a - b).mean() < 8  # the same picture as the upright PNG (JPEG chroma blur at the edge only)
    focal_exif = 26 * math.hypot(8, 16) / FULL_FRAME_DIAGONAL_MM
    assert out.cameras.fx[0].item() == pytest.approx(focal_exif, rel=1e-6)
    assert out.cameras.fx[1].item() == pytest.approx(hfov_focal(8), rel=1e-6)


def test_corrupt_file_skipped_then_error_when_nothing_left(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(data / "good_0.png")
    (data / "broken_1.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    buf = data / "good_2.png"
    Image.new("RGB", (8, 6), (4, 5, 6)).save(buf)
    with pytest.warns(ImagesDataWarning, match=r"skipped 1 unreadable file\(s\): broken_1\.jpg"):
        out = parse(data, tmp_path / "cache")
    assert out.metadata["source_names"] == ["good_0.png", "good_2.png"]

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n nope")
    with pytest.warns(ImagesDataWarning, match="x.png"), pytest.raises(ImagesDataError, match="no readable images"):
        parse(only_bad, tmp_path / "cache")
    with pytest.raises(ImagesDataError, match="no such file"):
        parse(tmp_path / "missing", tmp_path / "cache")


def test_other_sizes_are_cropped_and_resized_with_warning(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    Image.new("RGB", (20, 10), (9, 9, 9)).save(data / "a.png")
    Image.new("RGB", (40, 20), (9, 9, 9)).save(data / "b.png")  # same aspect, twice the size
    Image.new("RGB", (30, 30), (9, 9, 9)).save(data / "c.png")  # square: cropped to 30x15, resized
    with pytest.warns(ImagesDataWarning, match=r"b\.png \(40x20\); c\.png \(30x30\)"):
        out = parse(data, tmp_path / "cache")
    assert {load(p).shape for p in out.image_filenames} == {(10, 20, 3)}
    fx = out.cameras.fx[:, 0]
    assert fx[0].item() == pytest.approx(hfov_focal(20))
    assert fx[1].item() == pytest.approx(hfov_focal(40) * 0.5)
    assert fx[2].item() == pytest.approx(hfov_focal(30) * 20 / 30)  # the crop keeps focal, the resize scales it


def test_max_side_downscales_everything(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 30), (i, i, i)).save(data / f"{i}.png")
    out = parse(data, tmp_path / "cache", max_side=20)
    assert int(out.cameras.width[0]) == 20 and int(out.cameras.height[0]) == 15
    assert out.cameras.fx[0].item() == pytest.approx(hfov_focal(20))


def write_video(path: Path, frames: int, size=(32, 24)) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), (i * 8) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_frames_and_subsampling(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    write_video(video, 30)
    assert looks_unposed(video)
    out = parse(video, tmp_path / "cache", max_images=0)
    assert len(out.image_filenames) == 30
    assert out.metadata["source_names"][-1] == "frame_00029"
    assert load(out.image_filenames[0]).shape == (24, 32, 3)
    capsys.readouterr()
    out = parse(video, tmp_path / "cache", max_images=7)
    assert out.metadata["source_names"] == [f"frame_{i:05d}" for i in (0, 5, 10, 14, 19, 24, 29)]
    assert "kept 7 of 30 frames" in capsys.readouterr().out
    # Frame content follows the source: frame 10 was drawn with gray level 80.
    assert abs(float(load(out.image_filenames[2]).mean()) - 80.0) < 6.0


def test_select_frames_by_difference():
    still = [np.zeros((4, 4), np.float32)] * 10
    moving = [np.full((4, 4), 0.1 * (i + 1), np.float32) for i in range(10)]
    kept = select_frames(still + moving, 6, "difference")
    assert kept[0] == 0 and kept[-1] == 19
    assert sum(i >= 10 for i in kept) >= 4  # change happens in the second half; picks follow it
    assert select_frames(still, 3, "even") == [0, 4, 9]  # 4.5 rounds to the nearer-or-earlier frame
    assert select_frames(still, 0, "even") == list(range(10))
    assert natural_key("img2.png") < natural_key("img10.png")


def test_eval_interval_split(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(9):
        Image.new("RGB", (8, 6), (i, 0, 0)).save(data / f"f{i}.png")
    train = parse(data, tmp_path / "cache", eval_mode="interval", eval_interval=4)
    test = parse(data, tmp_path / "cache", split="test", eval_mode="interval", eval_interval=4)
    assert test.metadata["frame_indices"] == [3, 7]
    assert train.metadata["frame_indices"] == [0, 1, 2, 4, 5, 6, 8]
    assert test.metadata["source_names"] == ["f3.png", "f7.png"]


def test_registered_with_nerfstudio(tmp_path):
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    configs, descriptions = discover_dataparsers()
    assert isinstance(configs["images-data"], ImagesDataParserConfig)
    assert "Unposed" in descriptions["images-data"]
    data = tmp_path / "photos"
    write_mixed_folder(data)
    assert looks_unposed(data) and not looks_unposed(tmp_path)
    config = configs["images-data"]
    config.data, config.cache_dir = data, tmp_path / "cache"
    assert len(config.setup().get_dataparser_outputs("train").image_filenames) == 4
