"""What every test module shares: the ``gpu`` and ``slow`` markers and one trained run.

Markers (select with ``-m``, e.g. ``pytest -m "not slow"`` or ``pytest -m gpu``):

- ``gpu``: needs CUDA and gsplat's kernels. Skipped without a CUDA device, by the one rule below.
- ``slow``: an end-to-end command run (subprocesses, a trained run).

The session fixture :func:`trained_run` trains ff3r-tiny once, as a user types it (``ff3r-make-scene`` then
``ns-train``), and every test that needs a trained run's folder (``config.yml``, a checkpoint) reads that one.
"""

from __future__ import annotations

import pytest
from _commands import TrainedRun, train_shared_run

MARKERS = {
    "gpu": "needs CUDA and gsplat's kernels (skipped without a GPU)",
    "slow": "end-to-end command runs (subprocesses, a trained run)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The one rule for ``gpu`` tests: skipped when torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu: needs CUDA (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# ---------------------------------------------------------------------------------------------- the trained run
@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """The one ``ns-train ff3r-tiny`` run of the session (see ``_commands.train_shared_run``)."""
    return train_shared_run(tmp_path_factory.mktemp("trained_run"))
