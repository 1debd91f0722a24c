"""Export of FF3R reconstructions: vectorised 3DGS PLY with semantic features (:mod:`.ply`), the semantic
sidecar that makes the file queryable (:mod:`.sidecar`), and the ``ff3r-export`` / ``ff3r-query`` commands
(:mod:`.cli`). Nothing here imports nerfstudio at module load; ``ff3r-export`` does when it runs."""
