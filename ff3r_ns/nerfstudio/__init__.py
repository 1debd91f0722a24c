"""nerfstudio glue: model, pipeline, datamanager, trainer, refinement and schedule, the ``images-data`` dataparser,
the scene reader (:mod:`.scene`, nerfstudio-data through nerfstudio's own dataparser) and the checkpoint-loading
fix (:mod:`.compat`). Imports ``ff3r_ns.core`` and ``ff3r_ns.data`` only (docs/architecture.md)."""
