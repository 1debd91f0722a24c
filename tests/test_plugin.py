"""Registration through nerfstudio's own registry and the CLI's --help."""

import subprocess
import sys

import pytest


def test_methods_discovered_by_nerfstudio_registry():
    from nerfstudio.plugins.registry import discover_methods

    methods, descriptions = discover_methods()
    for name in ("ff3r", "ff3r-tiny"):
        assert name in methods, f"{name} not registered"
        assert methods[name].method_name == name
        assert "FF3R" in descriptions[name]
    # our plugin must not break nerfstudio's own methods: the merged table ns-train uses has both
    from nerfstudio.configs.method_configs import all_methods

    assert {"ff3r", "ff3r-tiny", "splatfacto"} <= set(all_methods)


def test_plugin_import_does_not_import_heavy_optional_modules():
    code = (
        "import sys, ff3r_ns.method_configs.ff3r, ff3r_ns.method_configs.ff3r_tiny;"
        "bad = [m for m in ('open_clip', 'open3d', 'ff3r_ns.core.network.model') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
def test_ns_train_help_lists_documented_flags():
    out = subprocess.run(
        [sys.executable, "-m", "nerfstudio.scripts.train", "ff3r-tiny", "--help"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = " ".join(out.stdout.split())
    assert "--pipeline.model.network.weights" in text
    assert "FF3R network checkpoint" in text  # the field's docstring is the flag's help
    assert "--pipeline.model.network.voxel-size" in text
