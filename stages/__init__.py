"""The pipeline's stages; run each from the project root as ``python -m stages.NAME``."""
