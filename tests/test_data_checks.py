"""Bad input gives one clear line naming the file and the problem."""

import json

import numpy as np
import pytest
from PIL import Image

from ff3r_ns.nerfstudio.datamanager import DataError, check_nerfstudio_data


def write_folder(root, sizes, corrupt=None):
    (root / "images").mkdir(parents=True)
    frames = []
    for i, (w, h) in enumerate(sizes):
        path = root / "images" / f"frame_{i:05d}.png"
        if i == corrupt:
            path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        else:
            Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
        frames.append({"file_path": f"images/{path.name}", "transform_matrix": np.eye(4).tolist()})
    meta = {"fl_x": 10, "fl_y": 10, "cx": sizes[0][0] / 2, "cy": sizes[0][1] / 2, "w": sizes[0][0], "h": sizes[0][1], "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_valid_folder_passes(tmp_path):
    check_nerfstudio_data(write_folder(tmp_path, [(8, 6)] * 3))


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        check_nerfstudio_data(tmp_path / "nope")


def test_folder_without_images(tmp_path):
    with pytest.raises(DataError, match="holds no images"):
        check_nerfstudio_data(tmp_path)


def test_unreadable_image_is_named(tmp_path):
    write_folder(tmp_path, [(8, 6)] * 3, corrupt=1)
    with pytest.raises(DataError, match=r"frame_00001\.png: unreadable image"):
        check_nerfstudio_data(tmp_path)


def test_mixed_sizes_are_named(tmp_path):
    # the JSON declares no per-frame size, so the first image's size is the reference
    write_folder(tmp_path, [(8, 6), (8, 6), (10, 6)])
    meta = json.loads((tmp_path / "transforms.json").read_text())
    del meta["w"], meta["h"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"frame_00002\.png: image is 10x6, the first image is 8x6"):
        check_nerfstudio_data(tmp_path)


def test_grayscale_image_is_named(tmp_path):
    write_folder(tmp_path, [(8, 6)] * 2)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "images" / "frame_00001.png")  # mode L
    with pytest.raises(DataError, match=r"frame_00001\.png: image mode L \(not RGB/RGBA\)"):
        check_nerfstudio_data(tmp_path)


def test_missing_listed_image(tmp_path):
    write_folder(tmp_path, [(8, 6)] * 2)
    (tmp_path / "images" / "frame_00001.png").unlink()
    with pytest.raises(DataError, match=r"frame_00001\.png: image listed in transforms.json does not exist"):
        check_nerfstudio_data(tmp_path)
