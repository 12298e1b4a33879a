"""jaxtiny: GS-WGAN, self-training under domain shift, and MCUNet in JAX."""

__version__ = "0.1.0"
