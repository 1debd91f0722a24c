"""What the package's commands share: tyro reads their flags from config dataclasses, one flag per field with the
field's docstring as its help, as nerfstudio's do (flat flags, no subcommands).

A dataclass shared by two commands (``TrainConfig``) or kept free of CLI details (``LossConfig``, ``TeacherSettings``
in ``core/``, ``SceneSpec``) gets one command's spelling and visibility through :func:`command_view`.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import typing
from typing import Annotated, Any, Callable, Optional, Sequence, TypeVar

T = TypeVar("T")


def command_view(
    cls: type[T], markers: Optional[dict[str, Any]] = None, defaults: Optional[dict[str, Any]] = None,
    types: Optional[dict[str, Any]] = None,
) -> type[T]:
    """``cls`` as one command's flags: a subclass whose named fields carry tyro ``markers`` (``tyro.conf.arg(...)``,
    ``tyro.conf.Suppress``), other ``defaults`` or other ``types``; help texts stay the docstrings of ``cls``.

    Example: ``command_view(TrainConfig, markers={"fusion": tyro.conf.Suppress}, defaults={"fusion": False})``.
    """
    markers, defaults, types = markers or {}, defaults or {}, types or {}
    unknown = (markers.keys() | defaults.keys() | types.keys()) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    changed = []
    for f in dataclasses.fields(cls):
        if f.name not in markers and f.name not in defaults and f.name not in types:
            continue
        typ = types.get(f.name, hints[f.name])
        if f.name in markers:
            typ = Annotated[typ, markers[f.name]]
        if f.name in defaults:
            default = dataclasses.field(default=defaults[f.name])
        elif f.default_factory is not dataclasses.MISSING:
            default = dataclasses.field(default_factory=f.default_factory)
        else:
            default = dataclasses.field(default=f.default)
        changed.append((f.name, typ, default))
    return dataclasses.make_dataclass(cls.__name__, changed, bases=(cls,))


def parse(cls: type[T], prog: str, argv: Optional[Sequence[str]]) -> T:
    """``cls`` from ``argv`` (default: ``sys.argv[1:]``); its docstring is the command's description."""
    import tyro

    return tyro.cli(cls, args=None if argv is None else list(argv), prog=prog)


def command_line(prog: str, argv: Optional[Sequence[str]]) -> str:
    """The command as typed (recorded in checkpoint metadata)."""
    return shlex.join([prog, *(sys.argv[1:] if argv is None else list(argv))])


def run_cli(prog: str, main: Callable[[Optional[Sequence[str]]], Any], argv: Optional[Sequence[str]] = None) -> None:
    """Run ``main(argv)``; bad input exits with a one-line message instead of a traceback."""
    try:
        main(argv)
    except (FileNotFoundError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
