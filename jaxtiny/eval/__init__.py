"""Evaluation of generated datasets (IS, FID, downstream accuracy)."""
