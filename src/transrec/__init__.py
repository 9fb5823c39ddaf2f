"""transrec: transferable recommendation from mixture-of-modality feedback, as a pipeline."""

__version__ = "0.1.0"
