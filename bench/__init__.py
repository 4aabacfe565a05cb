"""Speed and memory benchmark: the pipeline's stages against the reference implementation's approach."""
