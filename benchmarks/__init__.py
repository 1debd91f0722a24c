"""The benchmarks of ff3r-ns: one module per benchmark, each run from the repository root as
``python -m benchmarks.<name>`` and writing ``benchmarks/results/<name>.json`` in the shared envelope
(:mod:`ff3r_ns.envelope`); ``python -m benchmarks.make_results`` renders those files into the README.

Not part of the installed package (``pyproject.toml`` ships ``ff3r_ns`` only), and the package never imports it.
Shared here: :mod:`benchmarks.common` (paths, timing, writing results), :mod:`benchmarks.timed_runs` (FF3R and
splatfacto through nerfstudio's Trainer, in-process), :mod:`benchmarks.offline_splatfacto` (splatfacto without
network access), :mod:`benchmarks.results_format` / :mod:`benchmarks.results_plots` (README tables and plots).
"""
