"""Training of the FF3R network: a stand-in semantic encoder, then two clearly separate stages.

0. :mod:`ff3r_ns.training.pretrain_semantic` (``ff3r-pretrain-semantic``) -- a small semantic encoder trained to
   reproduce the 2D teacher (a stand-in for a pretrained foundation model).
1. :mod:`ff3r_ns.training.pretrain` (``ff3r-pretrain-geometry``) -- **supervised** geometry pretraining
   on generated scenes with ground-truth cameras and depth (losses: :mod:`ff3r_ns.core.geometry_losses`); a
   stand-in for VGGT's pretraining when no VGGT checkpoint is available.
2. :mod:`ff3r_ns.training.train` (``ff3r-train``) -- **annotation-free** feature training: photometric,
   feature-rendering and geometry-guided feature-warping losses (:mod:`ff3r_ns.core.losses`) at the
   network's own predicted cameras.

Both share :mod:`ff3r_ns.training.loop` (the steps), :mod:`~ff3r_ns.training.config` (``TrainConfig``, whose fields
are their flags through :mod:`~ff3r_ns.cli`), :mod:`~ff3r_ns.training.optimizer` (AdamW, schedule),
:mod:`~ff3r_ns.training.distributed` (DDP), :mod:`~ff3r_ns.training.checkpointing` (checkpoints, resume),
:mod:`~ff3r_ns.training.logs` and :mod:`ff3r_ns.training.data` (scene cache and context sampling).
"""
