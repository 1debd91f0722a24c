"""One small module per registered nerfstudio method (pure wiring)."""
