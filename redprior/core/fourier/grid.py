"""The one frequency and radius grid of the core (integer-exact).

Fourier layouts are numpy's: rfftn (last axis 0..n//2) or fftn; the origin of a real-space map
is voxel n//2 in every axis (RELION's convention). Frequencies are integers built with
arithmetic, not fftfreq(n) * n: for n not a power of 2 that product is inexact (16.999...),
which moves voxels at exact half-integer radii into the wrong shell.
"""
import numpy as np


def integer_frequencies(n):
    """0, 1, ..., -2, -1: the integer frequencies of an n-point FFT axis (fftfreq(n) * n)."""
    return (np.arange(n) + n // 2) % n - n // 2


def radius2(n, dims=3, layout="rfft"):
    """|k|^2 as exact integers on an rfftn ('rfft') or fftn ('fft') grid of an n^dims box."""
    if layout not in ("rfft", "fft"):
        raise ValueError(f"layout must be 'rfft' or 'fft', got {layout!r}.")
    k = integer_frequencies(n)
    last = np.arange(n // 2 + 1) if layout == "rfft" else k
    axes = [k] * (dims - 1) + [last]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    return sum(g.astype(np.int64) ** 2 for g in grids)


def frequency_axes(n, dims=3, layout="rfft"):
    """The integer frequency of every voxel, one float64 array per axis ((z,) y, x), dense."""
    if layout not in ("rfft", "fft"):
        raise ValueError(f"layout must be 'rfft' or 'fft', got {layout!r}.")
    k = integer_frequencies(n).astype(np.float64)
    last = np.arange(n // 2 + 1, dtype=np.float64) if layout == "rfft" else k
    return np.meshgrid(*([k] * (dims - 1) + [last]), indexing="ij")


def shell_index(n, dims=3):
    """Shell round(|k|) of every voxel of an rfftn grid (RELION's FSC shells)."""
    # sqrt of an integer is never exactly x.5, so rint and RELION's ROUND agree here
    return np.rint(np.sqrt(radius2(n, dims))).astype(np.int64)


def real_radius(n, dims=3):
    """Distance (px) of every voxel of a centred n^dims box from the origin voxel n//2."""
    c = np.arange(n) - n // 2
    grids = np.meshgrid(*([c] * dims), indexing="ij", sparse=True)
    return np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids))


def real_coordinates(n):
    """(3, n^3) x, y, z coordinates (px) of a centred n^3 box, origin at voxel n//2."""
    c = np.arange(n) - n // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()]).astype(np.float64)
