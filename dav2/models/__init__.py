"""Depth Anything V2 in PyTorch: the model, its configurations and checkpoint loading."""
