"""Band-limited FFTs between a padded half-complex Fourier grid and its central real-space box.

Why by hand: the hook's two transforms run on RELION's padded grid m = pad * ori (256^3 at box
128, pad 2), although only the frequencies |k_i| <= band carry data (RELION's current size:
often a third of the box in the coarse iterations) and only the central ori^3 voxels are kept.
Transforming one axis at a time, and cutting each axis to what is needed as soon as it is done
(a pruned FFT), skips the zeros and the discarded voxels; scipy.fft has no pruned
multi-dimensional transform. The numbers are those of the full transform, to rounding (tested).

Layouts: the full grid is numpy's rfftn order, (m, m, m//2 + 1). A band block holds the
entries |k_0|, |k_1|, k_2 <= band of it: (2 band + 1, 2 band + 1, band + 1), frequencies
0..band, -band..-1 on the first two axes (FFT order), or the whole first two axes when the
band covers them (2 band + 1 >= m). The real box is centred at voxel n//2, as RELION crops the
centre of fftshift(irfftn(...)).
"""
import numpy as np
import scipy.fft


def clip_band(m, band=None):
    """The band of an m-point grid: band, at most m//2 (None: the whole grid)."""
    return m // 2 if band is None else max(0, min(int(band), m // 2))


def _axis_index(m, band):
    """Where a block's entries stand on an m-point axis (a slice when it is the whole axis)."""
    if 2 * band + 1 >= m:
        return slice(None)
    return np.r_[0:band + 1, m - band:m]


def block_frequencies(m, band):
    """Integer frequencies of a band block: (first two axes, last axis), int32."""
    band = clip_band(m, band)
    kb = _axis_index(m, band)
    k = (np.arange(m) + m // 2) % m - m // 2
    return k[kb].astype(np.int32), np.arange(band + 1, dtype=np.int32)


def band_block(ft, band):
    """The band block of a full rfftn-layout grid (a view when the band covers the grid's
    first two axes, else a copy)."""
    m = ft.shape[0]
    band = clip_band(m, band)
    kb = _axis_index(m, band)
    if isinstance(kb, slice):
        return ft[:, :, :band + 1]
    return ft[np.ix_(kb, kb, np.arange(band + 1))]


def add_band_block(ft, block):
    """ft += block, the block standing at its band's place on ft's full grid (in place)."""
    m = ft.shape[0]
    band = block.shape[2] - 1
    kb = _axis_index(m, band)
    if isinstance(kb, slice):
        ft[:, :, :band + 1] += block
    else:
        ft[np.ix_(kb, kb, np.arange(band + 1))] += block


def _centre(m, n):
    """Indices, on an m-point real axis in FFT order, of the centred n voxels (the window
    [m//2 - n//2, m//2 - n//2 + n) of the fftshifted axis)."""
    return (np.arange(n) - n // 2) % m


def _along(arr, axis, m, index, inverse, workers):
    """Complex FFT of arr along axis on m points, arr's entries standing at `index` of that
    axis, the rest zero."""
    if not isinstance(index, slice):
        shape = list(arr.shape)
        shape[axis] = m
        full = np.zeros(shape, dtype=arr.dtype)
        sel = [slice(None)] * arr.ndim
        sel[axis] = index
        full[tuple(sel)] = arr
        arr = full
    fft = scipy.fft.ifft if inverse else scipy.fft.fft
    return fft(arr, axis=axis, workers=workers, overwrite_x=not isinstance(index, slice))


def centre_of_irfftn(block, m, n, workers=1):
    """The centred n^3 box of fftshift(irfftn(F, s=(m, m, m))), F being zero outside the band
    block given (its band: block.shape[2] - 1); in the block's precision."""
    band = block.shape[2] - 1
    kb = _axis_index(m, band)
    rs = _centre(m, n)
    a = _along(block, 0, m, kb, True, workers)[rs]           # (n, nb, band + 1)
    a = _along(a, 1, m, kb, True, workers)[:, rs]            # (n, n, band + 1)
    half = np.zeros((n, n, m // 2 + 1), dtype=a.dtype)
    half[..., :band + 1] = a
    del a
    return scipy.fft.irfft(half, n=m, axis=2, workers=workers, overwrite_x=True)[..., rs]


def rfftn_of_centre(vol, m, band=None, workers=1):
    """The band block of rfftn(ifftshift(big)), big being the m^3 box with vol (n^3) at its
    centre and zeros elsewhere. In vol's precision (float32 gives complex64)."""
    n = vol.shape[0]
    band = clip_band(m, band)
    kb = _axis_index(m, band)
    rs = _centre(m, n)
    big = np.zeros((n, n, m), dtype=vol.dtype)
    big[..., rs] = vol
    a = scipy.fft.rfft(big, axis=2, workers=workers, overwrite_x=True)[..., :band + 1]
    del big
    a = _along(a, 1, m, rs, False, workers)                  # (n, m, band + 1)
    if not isinstance(kb, slice):
        a = a[:, kb]
    a = _along(a, 0, m, rs, False, workers)                  # (m, nb, band + 1)
    return a if isinstance(kb, slice) else a[kb]
