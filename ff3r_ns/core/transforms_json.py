"""The one reader of a nerfstudio-data camera file (``transforms.json``, or a camera list ``ns-export`` writes).

What each caller takes from it differs by role: :func:`ff3r_ns.core.pose_eval.cameras_from_transforms` parses the
cameras without nerfstudio (``core`` never imports it), :mod:`ff3r_ns.nerfstudio.datamanager` checks a folder before
nerfstudio's dataparser would fail on it, :mod:`ff3r_ns.nerfstudio.scene` reads labels and the depth scale next to
nerfstudio's dataparser. Where the file is and how it is opened is decided here only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

TRANSFORMS_JSON = "transforms.json"


def transforms_json_path(data: Union[str, Path]) -> Path:
    """The camera file of ``data``: ``data`` itself when it names a ``.json`` file, else ``data/transforms.json``."""
    data = Path(data)
    return data if data.suffix == ".json" else data / TRANSFORMS_JSON


def read_transforms_json(data: Union[str, Path]) -> tuple[Any, Path]:
    """The parsed camera file of ``data`` (:func:`transforms_json_path`) and its path.

    Raises:
        ValueError: the file is missing or unreadable, or not JSON (one line naming the file).
    """
    path = transforms_json_path(data)
    try:
        return json.loads(path.read_text()), path
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot be read as JSON ({err})") from None
