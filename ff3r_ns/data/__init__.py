"""Synthetic indoor scenes rendered by analytic ray casting.

``ff3r_ns.data.generate`` is the entry point: :class:`~ff3r_ns.data.generate.SceneSpec` ->
:func:`~ff3r_ns.data.generate.generate_scene` -> :class:`~ff3r_ns.data.generate.SceneViews`
(images, exact z-depth, class labels, OpenCV cameras) -> :func:`~ff3r_ns.data.generate.write_scene`
(a nerfstudio-data folder with 16-bit millimetre depth PNGs, label PNGs and ``points.ply``).
The console script ``ff3r-make-scene`` wraps both.

Modules: ``textures`` (procedural solid textures), ``primitives`` (scene description, exact ray-primitive
intersection), ``furniture`` (object templates, the class list), ``layout`` (room, lights,
non-overlapping placement), ``trajectory`` (orbit / walk camera paths), ``raycast`` (ray casting and
shading), ``generate`` (API and writer), ``make_scene`` (CLI). Besides the generator, ``images`` reads any photo
as RGB (for the ``images-data`` dataparser and the scene reader). Nothing here is imported by the
package root; import the submodules you need. Imports only ``ff3r_ns.core`` and ``ff3r_ns.cli``, never nerfstudio
(docs/architecture.md).
"""
