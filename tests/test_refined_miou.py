"""benchmarks/refined_miou.py on one tiny generated room (CPU): rows, summary and what the scores must satisfy."""

from __future__ import annotations

import json

from benchmarks import refined_miou


def test_refined_miou_scores_both_splits_before_and_after(tmp_path):
    out = refined_miou.main(["--seeds", "0", "--views", "5", "--resolution", "32", "--steps", "20", "--out",
                       str(tmp_path / "r.json"), "--cache-dir", str(tmp_path / "scenes"), "--runs-dir", str(tmp_path / "runs")])
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert data["complete"] is True
    assert {(r["step"], r["split"]) for r in rows} == {(0, "source"), (0, "target"), (20, "source"), (20, "target")}
    by = {(r["step"], r["split"]): r for r in rows}
    assert by[(0, "source")]["views"] == 5 and by[(0, "target")]["views"] == 1
    # The teacher sees the ground-truth labels through its noise: far better than chance on 8 classes.
    assert all(0.5 < r["teacher_miou"] <= 1.0 for r in rows)
    # The same teacher pixels before and after: its score does not depend on the reconstruction.
    assert by[(0, "target")]["teacher_miou"] == by[(20, "target")]["teacher_miou"]
    # Refinement fits the training views.
    assert by[(20, "source")]["psnr"] > by[(0, "source")]["psnr"] + 0.3
    s = data["summary"]
    assert abs(s["refined_target_teacher_miou"] - by[(20, "target")]["teacher_miou"]) < 1e-4
    assert s["target_beats_teacher"] == (s["refined_target_miou"] >= s["refined_target_teacher_miou"])


def test_a_run_cut_short_keeps_the_rooms_it_measured(tmp_path, monkeypatch):

    def fake_room(args, seed):
        if seed == 1:
            raise KeyboardInterrupt  # the machine taken back during the second room
        return [{"scene": f"room{seed}", "seed": seed, "step": s, "split": split, "miou": 0.5, "teacher_miou": 0.9,
                 "psnr": 20.0, "views": 3, "gaussians": 10, "seconds": 1.0}
                for s in (0, 7) for split in ("source", "target")]

    monkeypatch.setattr(refined_miou, "run_scene", fake_room)
    out = tmp_path / "r.json"
    try:
        refined_miou.main(["--seeds", "0", "1", "--out", str(out)])
    except KeyboardInterrupt:
        pass
    data = json.loads(out.read_text())
    assert {r["seed"] for r in data["rows"]} == {0} and len(data["rows"]) == 4
    assert data["complete"] is False and data["summary"]["refined_target_miou"] == 0.5


def test_summary_of_no_rows_is_empty_and_of_rows_is_their_means():

    assert refined_miou.summary([]) == {}
    rows = [{"step": s, "split": "target", "miou": m, "teacher_miou": 0.9} for s, m in ((0, 0.2), (5, 0.8), (5, 0.95))]
    s = refined_miou.summary(rows)
    assert s["feedforward_target_miou"] == 0.2 and s["refined_target_miou"] == 0.875
    assert s["target_beats_teacher"] is False
