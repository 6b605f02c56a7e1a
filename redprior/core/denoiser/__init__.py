"""The denoiser: 3D U-Net, training, inference, the worker, the single-pass curve (TensorFlow lives here only)."""
