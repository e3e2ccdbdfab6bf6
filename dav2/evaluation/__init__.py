"""dav2-eval: DA-2K pairwise accuracy and dense metrics against measured depth."""
