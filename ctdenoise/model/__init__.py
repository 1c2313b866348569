"""The CLIPDenoising network, CLIP weight resolution and safe checkpoints."""
