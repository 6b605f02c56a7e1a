"""Fourier shell correlation and resolution read-out (RELION's getFSC convention)."""
import numpy as np

from .fourier import radial_index_rfft


def fsc(map1, map2):
    """FSC per shell 0..N/2 (shells = round(|k|), unmasked, as relion_image_handler --fsc)."""
    if map1.shape != map2.shape:
        raise ValueError(f"FSC needs maps of the same shape, got {map1.shape} and {map2.shape}.")
    n = map1.shape[0]
    f1 = np.fft.rfftn(map1)
    f2 = np.fft.rfftn(map2)
    shells = radial_index_rfft(n, map1.ndim).ravel()
    nsh = n // 2 + 1
    keep = shells < nsh
    s = shells[keep]
    num = np.bincount(s, (f1.ravel()[keep] * np.conj(f2.ravel()[keep])).real, nsh)
    d1 = np.bincount(s, (np.abs(f1.ravel()[keep]) ** 2), nsh)
    d2 = np.bincount(s, (np.abs(f2.ravel()[keep]) ** 2), nsh)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / np.sqrt(d1 * d2)
    return np.nan_to_num(out, nan=0.0)


def resolution_at(curve, box, pixel_size, threshold=0.143):
    """Resolution (A) of the last shell before the curve first drops below `threshold`.

    Returns (resolution, crossed). When the curve never drops below the threshold the
    resolution is Nyquist and crossed is False, so callers can say so instead of
    extrapolating. Shell 0 is ignored.
    """
    curve = np.asarray(curve, dtype=float)
    below = np.nonzero(curve[1:] < threshold)[0]
    if len(below) == 0:
        return 2.0 * pixel_size, False
    first_bad = below[0] + 1
    if first_bad <= 1:
        return float("inf"), True
    return box * pixel_size / float(first_bad - 1), True


def shell_resolutions(box, pixel_size):
    """Resolution in A of each shell 0..box/2 (shell 0 is inf)."""
    idx = np.arange(box // 2 + 1, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(idx > 0, box * pixel_size / np.maximum(idx, 1e-9), np.inf)


def correlation(a, b):
    a = a.ravel().astype(np.float64) - a.mean()
    b = b.ravel().astype(np.float64) - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))
