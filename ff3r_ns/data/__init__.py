"""Synthetic indoor scenes rendered by analytic ray casting.

``ff3r_ns.data.generate`` is the entry point: :class:`~ff3r_ns.data.generate.SceneSpec` ->
:func:`~ff3r_ns.data.generate.generate_scene` -> :class:`~ff3r_ns.data.generate.SceneViews`
(images, exact z-depth, class labels, OpenCV cameras) -> :func:`~ff3r_ns.data.generate.write_scene`
(a nerfstudio-data folder with 16-bit millimetre depth PNGs, label PNGs and ``points.ply``).
The console script ``ff3r-make-scene`` wraps both.

Modules: ``textures`` (procedural solid textures), ``geometry`` (primitives, exact ray
intersection), ``furniture`` (object templates, the class list), ``layout`` (room, lights,
non-overlapping placement), ``trajectory`` (orbit / walk camera paths), ``render`` (ray casting and
shading), ``generate`` (API and writer), ``make_scene`` (CLI). Nothing here is imported by the
package root; import the submodules you need.
"""
