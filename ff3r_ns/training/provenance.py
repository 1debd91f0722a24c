"""The command chain of a checkpoint: every command that made it, from the first stage to the last.

Each training stage records its own command line (``metadata["command"]``); a stage that starts from other
checkpoints (``--init``, ``--semantic-checkpoint``) also records theirs, so the shipped network names the whole chain
that reproduces it (``metadata["command_chain"]``), not only its last step.

Example::

    chain = command_chain("ff3r-train --init geo.pt ...", Path("geo.pt"))
    # ["ff3r-pretrain-geometry ...", "ff3r-train --init geo.pt ..."]
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import torch


def command_chain(command: str, *parents: Optional[Path]) -> list[str]:
    """The commands that made a checkpoint: each parent's chain in the order given (a command that two parents share
    is listed once), then ``command``.

    Args:
        command: the command line of the stage being saved.
        parents: checkpoints it started from (None entries are skipped). A parent's chain is its recorded
            ``command_chain``, else its ``command``, else nothing (e.g. a foundation model's own weights).

    Returns:
        The commands, first stage first.
    """
    chain: list[str] = []
    for parent in parents:
        if parent is None:
            continue
        path = Path(parent).resolve()
        for c in _recorded_chain(str(path), path.stat().st_mtime_ns):
            if c not in chain:
                chain.append(c)
    return [*chain, command]


@functools.lru_cache(maxsize=8)
def _recorded_chain(path: str, mtime_ns: int) -> tuple[str, ...]:
    # Read once per file version: a run saves several times.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict):
        return ()
    meta = ckpt.get("metadata") or ckpt.get("ff3r")  # FF3R network checkpoints / ff3r-pretrain-semantic's files
    if not isinstance(meta, dict):
        return ()
    if meta.get("command_chain"):
        return tuple(meta["command_chain"])
    return (meta["command"],) if meta.get("command") else ()
