"""Denoiser models for RED: loading, resampling to the model's grid, inference.

A model is a Keras 3 `.keras` file plus a `<name>.json` sidecar with what RED needs to use
it correctly: box and pixel size it was trained at, the normalisation ('standardise': per
map (x - mean) / std before the network, undone after), whether it predicts the residual,
and a description. TensorFlow is imported only here, and only when a model is used.
Maps larger than one tile (core.denoiser.tiling: 128 voxels by default, REDPRIOR_TILE) go
through the network in overlapping tiles, so the memory of a pass does not grow with the box.
"""
import json
import os

import numpy as np


from redprior.core.denoiser import tiling
from redprior.core.fourier.filters import fourier_resample, pad_or_crop

# Refuse pixel-size ratios beyond this: resampled that far, the model never saw such maps.
MAX_RESAMPLE = 2.0

# The models pool by 2 per level; an input must be divisible by this.
DEFAULT_MULTIPLE = 8


class DenoiserError(ValueError):
    pass


def metadata_path(model_path):
    return os.path.splitext(model_path)[0] + ".json"


def read_metadata(model_path):
    """The model's .json metadata; DenoiserError naming the file and the fix otherwise."""
    from redprior.core.io.jsonfile import JsonFileError, read_json

    meta_file = metadata_path(model_path)
    if not model_path or not os.path.exists(model_path):
        raise DenoiserError(f"Denoiser model {model_path} does not exist: choose a .keras file "
                            "written by 'train denoiser' (or leave it empty for the shipped one).")
    if not os.path.exists(meta_file):
        raise DenoiserError(f"Denoiser model {model_path} has no metadata file {meta_file} "
                            "(box, pixel size, normalisation). Re-save it with redprior.")
    try:
        meta = read_json(meta_file)
    except JsonFileError as exc:
        raise DenoiserError(f"Denoiser metadata {exc}") from exc
    if not isinstance(meta, dict):
        raise DenoiserError(f"{meta_file} is not denoiser metadata (a JSON object expected).")
    for key in ("box", "pixel_size", "normalisation"):
        if key not in meta:
            raise DenoiserError(f"{meta_file} lacks '{key}'.")
    return meta


def check_model_file(model_path):
    """Cheap check (no TensorFlow) that a .keras file is a whole Keras 3 archive."""
    import zipfile

    try:
        with zipfile.ZipFile(model_path) as zf:
            names = set(zf.namelist())
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DenoiserError(f"{model_path} is not a Keras model file ({exc}): it is damaged or "
                            "not a .keras archive; copy it again or retrain it.") from exc
    missing = {"config.json", "model.weights.h5"} - names
    if missing or bad:
        what = f"lacks {', '.join(sorted(missing))}" if missing else f"has a corrupt member {bad}"
        raise DenoiserError(f"{model_path} is not a usable Keras model file: it {what}; copy it "
                            "again or retrain it.")


class Denoiser:
    """A loaded model that maps a real-space map to its denoised version on the same grid."""

    MAX_RESAMPLE = MAX_RESAMPLE

    def __init__(self, model_path, tile=None, overlap=None):
        """tile / overlap (voxels, on the model's grid): see core.denoiser.tiling.settings
        (None: REDPRIOR_TILE / REDPRIOR_TILE_OVERLAP, else 128 / 16; tile 0: never tile)."""
        self.path = model_path
        self.meta = read_metadata(model_path)
        try:
            self.tile, self.overlap = tiling.settings(tile, overlap, self.multiple)
        except ValueError as exc:
            raise DenoiserError(str(exc)) from exc
        import keras  # heavy: only when a model is really used

        try:
            self.model = keras.saving.load_model(model_path, compile=False)
        except Exception as exc:
            raise DenoiserError(f"Cannot load denoiser {model_path}: {exc}") from exc

    @property
    def multiple(self):
        return int(self.meta.get("multiple", DEFAULT_MULTIPLE)) or 1

    @property
    def pixel_size(self):
        return float(self.meta["pixel_size"])

    def check_compatible(self, box, pixel_size):
        """Message why a map of this box/pixel size cannot be denoised, or '' if it can."""
        ratio = pixel_size / self.pixel_size
        if ratio > self.MAX_RESAMPLE or ratio < 1.0 / self.MAX_RESAMPLE:
            return (f"The denoiser {os.path.basename(self.path)} was trained at "
                    f"{self.pixel_size:g} A/px; maps at {pixel_size:g} A/px would need resampling "
                    f"by {ratio:.2f}x (allowed {1 / self.MAX_RESAMPLE:g}-{self.MAX_RESAMPLE:g}). "
                    "Rescale the particles (e.g. relion_preprocess --rescale) or train a denoiser "
                    "at this pixel size.")
        return ""

    def _batch(self, x):
        """The network on a batch (b, t, t, t) of maps; Keras inference, safe from threads."""
        return np.asarray(self.model(x[..., None].astype(np.float32), training=False))[..., 0]

    def _network(self, vol):
        mult = self.multiple
        n = vol.shape[0]
        n_net = int(np.ceil(n / mult) * mult)
        x = pad_or_crop(vol, n_net, fill=float(np.mean(vol)))
        if self.tile and n_net > self.tile:  # bounded memory at large boxes (tiling doc)
            y = tiling.apply_tiled(self._batch, x, self.tile, self.overlap, mult)
        else:  # one piece, exactly as before tiling existed
            y = np.asarray(self.model(x[None, ..., None].astype(np.float32),
                                      training=False))[0, ..., 0]
        if self.meta.get("residual", False):
            y = x - y
        return pad_or_crop(y, n)

    def __call__(self, vol, pixel_size):
        msg = self.check_compatible(vol.shape[0], pixel_size)
        if msg:
            raise DenoiserError(msg)
        n = vol.shape[0]
        # Bring the map onto the model's pixel size by Fourier cropping/padding.
        n_model = int(round(n * pixel_size / self.pixel_size / 2.0)) * 2
        x = fourier_resample(vol, n_model) if n_model != n else vol
        mean, std = float(x.mean()), float(x.std())
        if self.meta["normalisation"] == "standardise":
            if std <= 0:
                return vol.copy()
            y = self._network((x - mean) / std) * std + mean
        else:
            y = self._network(x)
        return fourier_resample(y, n) if n_model != n else y.astype(np.float32)


REQUIRED_KEYS = ("box", "pixel_size", "normalisation")


def _write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(finite_json(obj), fh, indent=1, allow_nan=False)
    os.replace(tmp, path)


def finite_json(obj):
    """numpy -> Python, NaN/inf -> None (strict JSON readers reject NaN)."""
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def save_model(model, path, meta):
    """Save a Keras model as `path` (.keras) with its `.json` metadata sidecar.

    meta must hold box, pixel_size and normalisation (see read_metadata); 'residual' is
    Denoiser's flag (True: the model outputs the noise, Denoiser subtracts it), so models
    that do their residual subtraction inside (core.denoiser.unet) are saved with residual False.
    Non-finite numbers are not valid JSON: write them as None.
    """
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise DenoiserError(f"Denoiser metadata for {path} lacks {', '.join(missing)}.")
    if not str(path).endswith(".keras"):
        raise DenoiserError(f"Keras 3 saves models as '.keras' files; got {path}.")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    model.save(path)
    _write_json_atomic(metadata_path(path), meta)
    return path


def update_metadata(model_path, **fields):
    """Add or replace keys of a saved model's metadata (e.g. the single-pass curve)."""
    meta = read_metadata(model_path)
    meta.update(fields)
    _write_json_atomic(metadata_path(model_path), meta)
    return meta
