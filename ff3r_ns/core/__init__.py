"""Pure torch (+ gsplat) building blocks. Nothing under ``ff3r_ns.core`` imports nerfstudio."""
