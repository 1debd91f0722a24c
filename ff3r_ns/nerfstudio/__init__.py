"""nerfstudio glue: model, pipeline, datamanager and the checkpoint-loading fix."""
