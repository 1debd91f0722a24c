"""scripts/make_training_scenes.py: the shipped model's training scenes, generated in worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _scripts import load_script


def test_spec_cycles_sizes_paths_and_arcs() -> None:
    m = load_script("make_training_scenes")
    specs = [m.training_scene_spec(i, views=32) for i in range(20)]
    assert [s.seed for s in specs] == list(range(1000, 1020))
    assert [(s.width, s.height) for s in specs[:5]] == [(112, 112), (140, 112), (168, 112), (128, 128), (112, 112)]
    assert [s.trajectory for s in specs[:3]] == ["orbit", "walk", "orbit"]
    assert [s.arc for s in specs[:6]] == [1.0, 0.6, 0.8, 0.5, 0.9, 1.0]
    # every (size, trajectory, arc) combination comes up within lcm(4, 2, 5) = 20 scenes
    assert len({(s.width, s.height, s.trajectory, s.arc) for s in specs}) == 20


def test_writes_scenes_and_resumes(tmp_path: Path) -> None:
    m = load_script("make_training_scenes")
    paths = m.main([str(tmp_path), "--count", "2", "--views", "3", "--jobs", "2"])
    assert [p.name for p in paths] == ["room1000", "room1001"]
    meta = json.loads((paths[1] / "transforms.json").read_text())
    assert len(meta["frames"]) == 3 and (meta["w"], meta["h"]) == (140, 112)
    stamp = (paths[0] / "transforms.json").stat().st_mtime_ns
    m.main([str(tmp_path), "--count", "3", "--views", "3", "--jobs", "1"])   # keeps the first two, adds one
    assert (paths[0] / "transforms.json").stat().st_mtime_ns == stamp
    assert (tmp_path / "room1002" / "transforms.json").is_file()


def test_rejects_evaluation_seeds(tmp_path: Path) -> None:
    m = load_script("make_training_scenes")
    with pytest.raises(SystemExit):
        m.main([str(tmp_path), "--first-seed", "0"])
