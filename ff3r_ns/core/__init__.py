"""Pure torch (+ gsplat) building blocks. Nothing under ``ff3r_ns.core`` imports nerfstudio, a CLI library or any
other part of ``ff3r_ns`` (docs/architecture.md; tests/test_architecture.py checks it)."""
