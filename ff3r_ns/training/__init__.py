"""Training of the FF3R network, in two clearly separate stages.

1. :mod:`ff3r_ns.training.pretrain` (``ff3r-pretrain-geometry``) -- **supervised** geometry pretraining
   on generated scenes with ground-truth cameras and depth; a stand-in for VGGT's pretraining when no
   VGGT checkpoint is available.
2. :mod:`ff3r_ns.training.train` (``ff3r-train``) -- **annotation-free** feature training: photometric,
   feature-rendering and geometry-guided feature-warping losses (:mod:`ff3r_ns.core.losses`) at the
   network's own predicted cameras.

Both share :mod:`ff3r_ns.training.loop` (the steps), :mod:`~ff3r_ns.training.config` (``TrainConfig``, whose fields
are their flags through :mod:`~ff3r_ns.cli`), :mod:`~ff3r_ns.training.optimizer` (AdamW, schedule),
:mod:`~ff3r_ns.training.distributed` (DDP), :mod:`~ff3r_ns.training.checkpointing` (checkpoints, resume),
:mod:`~ff3r_ns.training.logs` and :mod:`ff3r_ns.training.data` (scene cache and context sampling).
"""
