"""RELION's BackProjector::reconstruct in numpy, for the external-reconstruct hook.

Every step of RELION's own `reconstruct` that shapes the map it reads back is reproduced:
  prior 1/(pad^3 fudge tau2[round(r/pad)]) added to K for shells >= minres_map,
  F = B / K', inverse FFT on the padded grid, central window, scale ori^2,
  soft mask outside radius ori/2 (3-px cosine edge, outside filled with its mean),
  gridding correction (divide by sinc^2(r / (ori pad)), trilinear interpolation),
with RELION's 10 Pipe-Menon density-compensation iterations on its odd gridding grid
(see Reconstructor; matches relion_external_reconstruct to ~1e-9 rms at pad 1 and pad 2).
"""
import numpy as np

from redprior.core.fourier.grid import radius2, real_radius
from redprior.core.fourier.pruned import (band_block, block_frequencies, centre_of_irfftn,
                                          clip_band, rfftn_of_centre)

from .contract import relion_round


def _regrid(arr, src_size, dst_size, limit):
    """Copy the Fourier entries with |k_i| <= limit between rfft-layout grids of other sizes."""
    out = np.zeros((dst_size, dst_size, dst_size // 2 + 1), dtype=arr.dtype)
    idx = np.arange(-limit, limit + 1)
    xr = np.arange(0, limit + 1)
    out[np.ix_(idx % dst_size, idx % dst_size, xr)] = arr[np.ix_(idx % src_size, idx % src_size, xr)]
    return out


def prior_term(job, k, ires, inside, minres_map=5):
    """RELION's prior 1/(pad^3 fudge tau2[ires]) for weights k on any grid (ires: the shell
    round(r/pad) of each entry; inside: where RELION has data); 1/(0.001 K) where tau2 is 0
    (RELION's rule), 0 below minres_map and outside. Computed in k's precision."""
    dt = np.float32 if k.dtype == np.float32 else np.float64
    tau2 = job.tau2.astype(dt)[np.minimum(ires, len(job.tau2) - 1)]
    safe_tau2 = np.where(tau2 > 0, tau2, dt(1.0))
    safe_k = np.where(k > 1e-20, k, dt(1.0))
    inv = np.where(tau2 > 0, dt(1.0) / (dt(job.pad ** 3 * job.fudge) * safe_tau2),
                   np.where(k > 1e-20, dt(1.0) / (dt(0.001) * safe_k), dt(0.0)))
    inv[(ires < minres_map) | ~inside] = 0.0
    return inv


def data_band(job):
    """The largest |k_i| with RELION data on its padded grid M: round(pad r_max), at most M//2
    (the band of the hook's pruned transforms, core.fourier.pruned)."""
    return clip_band(job.padded_size, relion_round(job.pad * job.r_max))


def padded_grid_shells(job):
    """(shell round(r/pad), inside RELION's data radius) on the band block (data_band) of
    RELION's padded grid M (the layout of its B and K files; core.fourier.pruned).

    Built in int32 / one float64 buffer (r >= 0, so RELION's ROUND is floor(r/pad + 0.5)):
    at box 256, pad 2 the generic radius2 / relion_round path made five 0.5 GB temporaries."""
    k, kx = block_frequencies(job.padded_size, data_band(job))
    r2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2
    limit = int(relion_round(job.pad * job.r_max))
    shell = np.sqrt(r2, dtype=np.float64)
    shell /= job.pad
    shell += 0.5
    np.floor(shell, out=shell)
    return shell.astype(np.int32), r2 < limit ** 2


class Reconstructor:
    """RELION's BackProjector::reconstruct for one STAR job, in numpy (float64, as RELION's BASE).

    Works on RELION's odd gridding grid P = 2 (round(pad r_max) + 1) + 1: Pipe-Menon density
    compensation with the Fourier transform of RELION's Kaiser-Bessel blob (radius 3.8,
    alpha 15, order 0, tabulated at 10000 points over [0, 0.5)), then the window to the padded
    grid M, the inverse transform, the window to ori_size, the soft mask and the sinc^2
    gridding correction. Written from RELION's description; checked against
    relion_external_reconstruct in the tests.
    """

    BLOB_RADIUS = 3.8
    BLOB_ALPHA = 15.0
    BLOB_TABLE = 10000

    def __init__(self, job, gridding_iterations=10):
        self.job = job
        self.iters = gridding_iterations
        self.m = job.padded_size
        self.limit = int(relion_round(job.pad * job.r_max))
        self.max_r2 = self.limit ** 2
        self.p = 2 * (self.limit + 1) + 1
        self.inside_m = radius2(self.m) < self.max_r2
        self.r2_p = radius2(self.p)
        self.inside_p = self.r2_p < self.max_r2
        self.ires_p = relion_round(np.sqrt(self.r2_p) / job.pad)
        self._blob = None

    def to_p(self, arr):
        """An array on RELION's padded grid M (file layout) -> the gridding grid P."""
        return _regrid(arr * self.inside_m, self.m, self.p, min(self.limit, self.m // 2))

    def prior(self, k_p, minres_map=5):
        """1/(pad^3 fudge tau2[round(r/pad)]) on the P grid; 1000/K where tau2 is 0."""
        return prior_term(self.job, k_p, self.ires_p, self.inside_p, minres_map)

    def blob_real(self):
        """Real-space multiplier that convolves a P-grid Fourier array with RELION's blob."""
        if self._blob is None:
            from scipy.special import iv, jv
            p = self.p
            c = np.arange(p)
            c = np.where(c < p // 2, c, c - p).astype(np.float64)
            rval = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
            rval /= self.job.ori_size * self.job.pad
            sampling = 0.5 / self.BLOB_TABLE
            w = np.arange(self.BLOB_TABLE) * sampling
            x = 2.0 * np.pi * self.BLOB_RADIUS * w
            sigma = np.maximum(np.sqrt(np.abs(self.BLOB_ALPHA ** 2 - x ** 2)), 1e-12)
            # 3D Fourier transform of an order-0 Kaiser-Bessel blob, up to a constant
            table = np.where(x > self.BLOB_ALPHA, jv(1.5, sigma), iv(1.5, sigma)) / sigma ** 1.5
            idx = (rval / sampling).astype(np.int64)
            val = np.where(idx < self.BLOB_TABLE, table[np.minimum(idx, self.BLOB_TABLE - 1)], 0.0)
            self._blob = val / table[0]
        return self._blob

    def gridding_weights(self, fweight_p):
        """Density-compensation weights W such that |(W K) conv blob| ~ 1 inside the data radius."""
        if self.iters <= 0:  # plain division
            safe = np.where(fweight_p > 0, fweight_p, 1.0)
            return np.where(self.inside_p & (fweight_p > 0), 1.0 / safe, 0.0)
        w = self.inside_p.astype(np.float64)
        blob = self.blob_real()
        p = self.p
        for _ in range(self.iters):
            conv = np.fft.rfftn(np.fft.irfftn(w * fweight_p, s=(p, p, p)) * blob)
            corr = np.maximum(1e-6, np.abs(conv))
            w[self.inside_p] /= corr[self.inside_p]
        return np.minimum(w, 1e20)

    def to_map(self, fconv_p):
        """P-grid Fourier data -> RELION's real-space ori_size^3 map."""
        m = self.m + self.m % 2  # RELION keeps the padded real-space box even
        band = min(self.limit, m // 2)
        ft_m = _regrid(fconv_p, self.p, m, band)
        return fourier_to_map(band_block(ft_m, band), m, self.job.ori_size, self.job.pad)

    def reconstruct(self, b, k, numerator_extra=None, minres_map=5, do_map=True):
        """RELION's MAP reconstruction; numerator_extra (P grid) is added to B (the RED term)."""
        k_p = self.to_p(k)
        fweight = k_p + (self.prior(k_p, minres_map) if do_map else 0.0)
        w = self.gridding_weights(fweight)
        num = self.to_p(b)
        if numerator_extra is not None:
            num = num + numerator_extra
        return self.to_map(num * w)


def _sinc2(n, pad):
    """RELION's gridding correction sinc^2(r / (n pad)) on a centred n^3 box."""
    rval = real_radius(n) / (n * pad)
    with np.errstate(invalid="ignore", divide="ignore"):
        sinc = np.where(rval > 0, np.sin(np.pi * rval) / (np.pi * rval), 1.0)
    return sinc ** 2


def soft_mask_outside(vol, radius=None, width=3.0):
    """RELION's softMaskOutsideMap: cosine edge, the outside replaced by the outside's mean."""
    n = vol.shape[0]
    radius = n / 2.0 if radius is None else radius
    r = real_radius(n)
    # weight of the background: 0 inside radius, raised cosine to 1 at radius + width
    bg_w = np.clip((r - radius) / width, 0.0, 1.0)
    bg_w = np.where((r > radius) & (r < radius + width),
                    0.5 - 0.5 * np.cos(np.pi * (r - radius) / width), bg_w)
    total = bg_w.sum()
    mean_bg = float((vol * bg_w).sum() / total) if total > 0 else 0.0
    return vol * (1.0 - bg_w) + mean_bg * bg_w


def fourier_to_map(block, m, ori_size, pad):
    """The band block (core.fourier.pruned) of a padded half-complex F on an m^3 grid ->
    centred real-space ori_size^3 map on RELION's scale, in the block's precision (complex64
    gives a float32 transform). The inverse FFT is pruned: the band and the central window
    only."""
    vol = centre_of_irfftn(block, m, ori_size, workers=fft_workers())
    vol *= float(ori_size) ** 2
    vol = soft_mask_outside(vol)
    sinc2 = _sinc2(ori_size, pad)
    return (vol / sinc2).astype(np.float32)


# Relative floor of the direct division: K below 1e-3 of its shell's mean is raised to it, so
# that the sparsely sampled entries of a shell are not amplified into noise (RELION 5's Blush
# adds a margin of the same size to K before it divides).
DIRECT_MARGIN = 1e-3


def direct_map(job, b, k, margin=DIRECT_MARGIN):
    """x~ = B/K by direct division on RELION's padded grid M, then RELION's window, scale,
    soft mask and gridding correction (fourier_to_map): no density-compensation iterations.

    Why: this is the denoiser input of the method's authors' hook and of RELION 5's Blush; it
    costs one inverse FFT, where the gridded x~ (relion_external_reconstruct --no_map, or
    Reconstructor.reconstruct(do_map=False)) costs RELION's 10 gridding iterations, as much as
    the update itself (issue 11). Runs in b's precision."""
    ires, inside = padded_grid_shells(job)
    band = data_band(job)
    kb = band_block(k, band)
    inside &= kb > 0
    counts = np.bincount(ires[inside], minlength=job.ori_size)
    sums = np.bincount(ires[inside], weights=kb[inside], minlength=job.ori_size)
    shell_mean = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    real_dt = np.float32 if b.dtype == np.complex64 else np.float64
    # (bincount's length >= ori_size > the largest shell of the cube, sqrt(3)/2 ori_size)
    denominator = (margin * shell_mean).astype(real_dt)[ires]
    del ires
    np.maximum(denominator, kb, out=denominator)
    bb = band_block(b, band)
    ft = np.zeros(bb.shape, dtype=b.dtype)
    np.divide(bb, denominator, out=ft, where=inside)
    del denominator, inside, bb
    m = job.padded_size
    # RELION keeps the padded real-space box even (as Reconstructor.to_map): an odd M's band
    # block stands in the same place on the grid M + 1
    return fourier_to_map(ft, m + m % 2, job.ori_size, job.pad)


def map_to_fourier(vol, pad, dtype=np.float64, band=None):
    """Inverse of fourier_to_map (up to the soft mask) for a real-space map: the band block
    (core.fourier.pruned; None: the whole grid) of the padded F.

    Used to bring a denoised map onto the grid of B and K: undo the gridding correction,
    undo the ori^2 scale, zero-pad to pad*ori and transform (pruned: only the band is
    computed). dtype float32 gives complex64 (half the memory; RELION's B files are single
    precision).
    """
    n = vol.shape[0]
    m = int(round(pad * n))
    centre = (vol * _sinc2(n, pad) / float(n) ** 2).astype(dtype)
    return rfftn_of_centre(centre, m, band, workers=fft_workers())


def fft_workers():
    """Threads for the hook's FFTs: RELION runs the two halves' hooks at the same time, so
    each takes half of the cores (REDPRIOR_FFT_THREADS overrides)."""
    import os

    env = os.environ.get("REDPRIOR_FFT_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 2) // 2)
