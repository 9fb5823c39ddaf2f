"""Training: platform data and batches, the frozen-layer cache, the loop, W&B, and the CLI commands."""
