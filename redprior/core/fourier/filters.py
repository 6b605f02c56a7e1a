"""Filters and resampling of centred maps (origin at voxel N//2, RELION's convention)."""
import numpy as np

from .grid import shell_index


def rfft_centred(vol):
    """rfftn of a centred map (origin at N//2)."""
    return np.fft.rfftn(np.fft.ifftshift(vol))


def irfft_centred(ft, n):
    dims = ft.ndim
    return np.fft.fftshift(np.fft.irfftn(ft, s=(n,) * dims)).astype(np.float32)


def shell_filter(vol, per_shell):
    """Multiply the Fourier transform of a map by a per-shell profile (index = shell)."""
    n = vol.shape[0]
    shells = shell_index(n, vol.ndim)
    prof = np.zeros(shells.max() + 1)
    m = min(len(per_shell), len(prof))
    prof[:m] = per_shell[:m]
    return irfft_centred(rfft_centred(vol) * prof[shells], n)


def lowpass(vol, pixel_size, resolution, edge_shells=2.0):
    """Low-pass filter to `resolution` (A) with a raised-cosine edge `edge_shells` wide."""
    n = vol.shape[0]
    cutoff = n * pixel_size / float(resolution)
    r = np.arange(n)
    prof = np.clip(0.5 + 0.5 * np.cos(np.pi * (r - cutoff + edge_shells / 2) / edge_shells), 0, 1)
    prof[r <= cutoff - edge_shells / 2] = 1.0
    prof[r >= cutoff + edge_shells / 2] = 0.0
    return shell_filter(vol, prof)


def fourier_resample(vol, new_n):
    """Resample a centred cubic map to new_n^3 voxels by Fourier cropping / zero padding.

    The physical box changes pixel size (pixel * n / new_n); density values are kept on the
    same scale (mean preserved).
    """
    n = vol.shape[0]
    if new_n == n:
        return vol.astype(np.float32)
    ft = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(vol)))
    out = np.zeros((new_n,) * 3, dtype=complex)
    m = min(n, new_n)
    src = slice(n // 2 - m // 2, n // 2 - m // 2 + m)
    dst = slice(new_n // 2 - m // 2, new_n // 2 - m // 2 + m)
    out[dst, dst, dst] = ft[src, src, src]
    res = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(out))).real
    return (res * (new_n / n) ** 3).astype(np.float32)


def pad_or_crop(vol, new_n, fill=0.0):
    """Centred real-space pad (with `fill`) or crop of a cubic map."""
    n = vol.shape[0]
    if new_n == n:
        return vol
    if new_n > n:
        out = np.full((new_n,) * 3, fill, dtype=vol.dtype)
        o = new_n // 2 - n // 2
        out[o:o + n, o:o + n, o:o + n] = vol
        return out
    o = n // 2 - new_n // 2
    return vol[o:o + new_n, o:o + new_n, o:o + new_n]
