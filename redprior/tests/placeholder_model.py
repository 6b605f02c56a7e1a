"""A fixed-weight Keras model for tests of the file handling (not a prior, not shipped)."""
import json

import numpy as np

from redprior.core.denoiser.model import metadata_path

BUILTIN_NAME = "builtin-smooth-positive"
BUILTIN_DESCRIPTION = (
    "built-in fixed-weight Keras model (not learned): per-map standardisation, a 5^3 "
    "Gaussian convolution (sigma 1 voxel) and a ReLU, i.e. a smooth, positive density; "
    "a stand-in for unit tests of the file handling, not a prior")


def _gaussian_kernel(sigma=1.0, size=5):
    c = np.arange(size) - size // 2
    g = np.exp(-(c ** 2) / (2 * sigma ** 2))
    k = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return (k / k.sum()).astype(np.float32)


def write_placeholder_model(path, box, pixel_size):
    """Build and save the fixed-weight placeholder model (see BUILTIN_DESCRIPTION)."""
    import keras

    inp = keras.Input(shape=(None, None, None, 1))
    conv = keras.layers.Conv3D(1, 5, padding="same", use_bias=False, name="gaussian")
    out = keras.layers.ReLU()(conv(inp))
    model = keras.Model(inp, out, name="smooth_positive")
    conv.set_weights([_gaussian_kernel()[..., None, None]])
    model.save(path)
    meta = {"name": BUILTIN_NAME, "description": BUILTIN_DESCRIPTION, "box": int(box),
            "pixel_size": float(pixel_size), "normalisation": "standardise",
            "residual": False, "multiple": 1}
    with open(metadata_path(path), "w") as fh:
        json.dump(meta, fh, indent=1)
    return path
