"""mmrec: multimodal sequential recommendation on frozen features (KDSR, ODMT and baselines)."""

__version__ = "0.1.0"
