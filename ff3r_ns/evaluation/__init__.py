"""``ff3r-eval``: the evaluation protocol (docs/architecture.md, "Evaluation protocol") on nerfstudio-data scenes.

Modules: :mod:`.predictor` (network or ground-truth oracle, and the teacher's class space),
:mod:`.runner` (one scene: reconstruct, align, render, score), :mod:`.panels` (PNG figures),
:mod:`.report` (``eval.json`` / ``eval.md``), :mod:`.cli` (the command). Nothing here is imported by
``ff3r_ns.core``.
"""
