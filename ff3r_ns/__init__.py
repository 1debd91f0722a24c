"""ff3r-ns: feedforward feature 3D reconstruction (FF3R) as a nerfstudio method plugin.

Importing this package is cheap: heavy modules (nerfstudio, gsplat, open_clip) are imported lazily
by the modules that need them.
"""

__version__ = "0.1.0"
