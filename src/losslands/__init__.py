"""losslands: train models with different optimizers and measure the loss landscape they find."""

__version__ = "0.1.0"
