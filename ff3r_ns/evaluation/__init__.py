"""``ff3r-eval``: the evaluation protocol (docs/architecture.md, "Evaluation protocol") on nerfstudio-data scenes,
and ``ff3r-pose-eval``: camera accuracy of one camera file against another.

Modules: :mod:`.predictor` (network or ground-truth oracle, and the teacher's class space),
:mod:`.runner` (one scene: reconstruct, align, render, score), :mod:`.panels` (PNG figures),
:mod:`.report` (``eval.json`` / ``eval.md``), :mod:`.cli` (``ff3r-eval``), :mod:`.pose_cli` (``ff3r-pose-eval``).
Nothing here is imported by ``ff3r_ns.core``.
"""
