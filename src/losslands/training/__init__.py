"""Training: the LightningModule, the training cache and the probe callback."""
