"""RELION's --external_reconstruct contract (measured on RELION 3.1.3) and a numpy reconstruction.

RELION writes, per half and iteration, the Fourier data term B (real + imaginary MRC), the
weight K (both on the padded half-complex grid M^2 x (M/2+1), origin at [0, 0, 0], numpy
rfftn layout) and a STAR file with tau2 and the gold-standard FSC. It then runs the hook with
that STAR file and reads back a centred, real-space ori_size^3 map with no checks at all, so
every step of RELION's own `reconstruct` that shapes that map is reproduced here:
  prior 1/(pad^3 fudge tau2[round(r/pad)]) added to K for shells >= minres_map,
  F = B / K', inverse FFT on the padded grid, central window, scale ori^2,
  soft mask outside radius ori/2 (3-px cosine edge, outside filled with its mean),
  gridding correction (divide by sinc^2(r / (ori pad)), trilinear interpolation),
with RELION's 10 Pipe-Menon density-compensation iterations on its odd gridding grid
(see Reconstructor; matches relion_external_reconstruct to ~1e-9 rms at pad 1 and pad 2).
"""
import os
from dataclasses import dataclass, field

import numpy as np
from emtable import Table

from .mrcio import MapError, read_map, write_map


def relion_round(x):
    """RELION's ROUND: half away from zero (numpy's rint rounds half to even)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.sign(x) * np.floor(np.abs(x) + 0.5)
    return out.astype(np.int64) if out.ndim else int(out)


class ContractError(ValueError):
    """The files RELION handed over are inconsistent or missing."""


@dataclass
class ExternalJob:
    star: str
    data_real: str
    data_imag: str
    weight: str
    result: str
    result_star: str
    fudge: float
    pad: float
    ori_size: int
    current_size: int
    dimensionality: int
    tau2: np.ndarray = field(repr=False)
    fsc: np.ndarray = field(repr=False)
    iteration: int = -1
    half: int = 0  # 1, 2 or 0 for the final joined call

    @property
    def padded_size(self):
        return int(relion_round(self.pad * self.ori_size))

    @property
    def r_max(self):
        """Highest Fourier radius (unpadded pixels) with data."""
        return self.current_size // 2

    def all_files(self):
        return [self.data_real, self.data_imag, self.weight]


def _resolve(path, star):
    """RELION writes paths relative to its working directory (our cwd when it calls us).

    Fall back to the STAR file's folder so the program can also be run afterwards on
    kept files from elsewhere.
    """
    if os.path.isabs(path) or os.path.exists(path):
        return path
    star_dir = os.path.dirname(os.path.abspath(star))
    cand = os.path.join(star_dir, os.path.basename(path))
    return cand if os.path.exists(cand) else path


def parse_iteration(star):
    """(iteration, half) from a name like run_it003_half2_class001_external_reconstruct.star."""
    base = os.path.basename(star)
    it, half = -1, 0
    if "_it" in base:
        try:
            it = int(base.split("_it")[-1][:3])
        except ValueError:
            pass
    if "_half1" in base:
        half = 1
    elif "_half2" in base:
        half = 2
    return it, half


def read_job(star):
    if not star.endswith(".star"):
        raise ContractError(f"Expected RELION's external-reconstruct STAR file, got '{star}'.")
    if not os.path.exists(star):
        raise ContractError(f"STAR file {star} does not exist (run from RELION's working directory).")
    try:
        gen = Table(fileName=star, tableName="external_reconstruct_general")
        row = next(iter(gen))
        tt = Table(fileName=star, tableName="external_reconstruct_tau2")
    except Exception as exc:
        raise ContractError(f"Cannot read the external-reconstruct blocks of {star}: {exc}") from exc
    tau2 = np.asarray(tt.getColumnValues("rlnReferenceTau2"), dtype=np.float64)
    if tt.hasColumn("rlnGoldStandardFsc"):
        fsc = np.asarray(tt.getColumnValues("rlnGoldStandardFsc"), dtype=np.float64)
    else:
        fsc = np.zeros_like(tau2)
    if len(tau2) == 0:
        raise ContractError(f"{star} has an empty tau2 table. (relion_reconstruct 3.1.3 writes such "
                            "files; use relion_refine --external_reconstruct instead.)")
    it, half = parse_iteration(star)
    job = ExternalJob(
        star=star,
        data_real=_resolve(row.rlnExtReconsDataReal, star),
        data_imag=_resolve(row.rlnExtReconsDataImag, star),
        weight=_resolve(row.rlnExtReconsWeight, star),
        result=row.rlnExtReconsResult,
        result_star=row.rlnExtReconsResultStarfile,
        fudge=float(row.rlnTau2FudgeFactor),
        pad=float(row.rlnPaddingFactor),
        ori_size=int(row.rlnOriginalImageSize),
        current_size=int(row.rlnCurrentImageSize),
        dimensionality=int(row.rlnReferenceDimensionality),
        tau2=tau2, fsc=fsc, iteration=it, half=half)
    if job.dimensionality != 3:
        raise ContractError(f"{star}: only 3D references are supported (got {job.dimensionality}D).")
    return job


def load_fourier(job):
    """B (complex128) and K (float64) on the padded half-complex grid."""
    arrays = []
    for path in job.all_files():
        try:
            data, _ = read_map(path)
        except MapError as exc:
            raise ContractError(f"RELION's file is unusable: {exc}") from exc
        arrays.append(data.astype(np.float64))
    re, im, k = arrays
    m = job.padded_size
    expect = (m, m, m // 2 + 1)
    for name, arr in zip(("data_real", "data_imag", "weight"), arrays):
        if arr.shape != expect:
            raise ContractError(f"{name} has shape {arr.shape}, expected {expect} for box "
                                f"{job.ori_size} at padding {job.pad:g}.")
    return re + 1j * im, k


def _grid_radius2(size):
    """|k|^2 for the (size, size, size//2+1) rfft layout of a size^3 grid, as exact integers.

    Not fftfreq(size) * size: for sizes that are not powers of 2 (RELION's odd gridding grid
    P) that gives values like 16.999999999999996, so at pad 2 the ties round(r / pad) with r
    an odd integer (r = 17, 25, ...) fell into the shell below, and those voxels got the
    wrong tau2 prior (up to 5% rms off RELION's map where tau2 jumps between shells).
    """
    k = (np.arange(size) + size // 2) % size - size // 2  # 0, 1, ..., -2, -1 like fftfreq
    kr = np.arange(size // 2 + 1)
    return k[:, None, None] ** 2 + k[None, :, None] ** 2 + kr[None, None, :] ** 2


def _regrid(arr, src_size, dst_size, limit):
    """Copy the Fourier entries with |k_i| <= limit between rfft-layout grids of other sizes."""
    out = np.zeros((dst_size, dst_size, dst_size // 2 + 1), dtype=arr.dtype)
    idx = np.arange(-limit, limit + 1)
    xr = np.arange(0, limit + 1)
    out[np.ix_(idx % dst_size, idx % dst_size, xr)] = arr[np.ix_(idx % src_size, idx % src_size, xr)]
    return out


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
        self.inside_m = _grid_radius2(self.m) < self.max_r2
        self.r2_p = _grid_radius2(self.p)
        self.inside_p = self.r2_p < self.max_r2
        self.ires_p = relion_round(np.sqrt(self.r2_p) / job.pad)
        self._blob = None

    def to_p(self, arr):
        """An array on RELION's padded grid M (file layout) -> the gridding grid P."""
        return _regrid(arr * self.inside_m, self.m, self.p, min(self.limit, self.m // 2))

    def prior(self, k_p, minres_map=5):
        """1/(pad^3 fudge tau2[round(r/pad)]) on the P grid; 1000/K where tau2 is 0."""
        job = self.job
        tau2 = job.tau2[np.minimum(self.ires_p, len(job.tau2) - 1)]
        safe_tau2 = np.where(tau2 > 0, tau2, 1.0)
        safe_k = np.where(k_p > 1e-20, k_p, 1.0)
        inv = np.where(tau2 > 0, 1.0 / (job.pad ** 3 * job.fudge * safe_tau2),
                       np.where(k_p > 1e-20, 1.0 / (0.001 * safe_k), 0.0))
        inv[(self.ires_p < minres_map) | ~self.inside_p] = 0.0
        return inv

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
        ft_m = _regrid(fconv_p, self.p, m, min(self.limit, m // 2))
        return fourier_to_map(ft_m, self.job.ori_size, self.job.pad)

    def reconstruct(self, b, k, numerator_extra=None, minres_map=5, do_map=True):
        """RELION's MAP reconstruction; numerator_extra (P grid) is added to B (the RED term)."""
        k_p = self.to_p(k)
        fweight = k_p + (self.prior(k_p, minres_map) if do_map else 0.0)
        w = self.gridding_weights(fweight)
        num = self.to_p(b)
        if numerator_extra is not None:
            num = num + numerator_extra
        return self.to_map(num * w)


def _real_space_grids(n, pad):
    c = np.arange(n) - n // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    rval = r / (n * pad)
    with np.errstate(invalid="ignore", divide="ignore"):
        sinc = np.where(rval > 0, np.sin(np.pi * rval) / (np.pi * rval), 1.0)
    return r, sinc ** 2


def soft_mask_outside(vol, radius=None, width=3.0):
    """RELION's softMaskOutsideMap: cosine edge, the outside replaced by the outside's mean."""
    n = vol.shape[0]
    radius = n / 2.0 if radius is None else radius
    r, _ = _real_space_grids(n, 1)
    # weight of the background: 0 inside radius, raised cosine to 1 at radius + width
    bg_w = np.clip((r - radius) / width, 0.0, 1.0)
    bg_w = np.where((r > radius) & (r < radius + width),
                    0.5 - 0.5 * np.cos(np.pi * (r - radius) / width), bg_w)
    total = bg_w.sum()
    mean_bg = float((vol * bg_w).sum() / total) if total > 0 else 0.0
    return vol * (1.0 - bg_w) + mean_bg * bg_w


def fourier_to_map(ft, ori_size, pad):
    """Padded half-complex F -> centred real-space ori_size^3 map on RELION's scale."""
    m = ft.shape[0]
    big = np.fft.fftshift(np.fft.irfftn(ft, s=(m, m, m)))
    o = m // 2 - ori_size // 2
    vol = big[o:o + ori_size, o:o + ori_size, o:o + ori_size] * float(ori_size) ** 2
    vol = soft_mask_outside(vol)
    _, sinc2 = _real_space_grids(ori_size, pad)
    return (vol / sinc2).astype(np.float32)


def map_to_fourier(vol, pad):
    """Inverse of fourier_to_map (up to the soft mask) for a real-space map: the padded F.

    Used to bring a denoised map onto the grid of B and K: undo the gridding correction,
    undo the ori^2 scale, zero-pad to pad*ori and transform.
    """
    n = vol.shape[0]
    m = int(round(pad * n))
    _, sinc2 = _real_space_grids(n, pad)
    big = np.zeros((m, m, m), dtype=np.float64)
    o = m // 2 - n // 2
    big[o:o + n, o:o + n, o:o + n] = vol * sinc2 / float(n) ** 2
    return np.fft.rfftn(np.fft.ifftshift(big))


def unregularised_map(job, b, k, gridding_iterations=10):
    """x~ = B/K in real space (no prior), the denoiser's input."""
    return Reconstructor(job, gridding_iterations).reconstruct(b, k, do_map=False)


def red_update(job, b, k, denoised=None, lam=0.0, minres_map=5, gridding_iterations=10):
    """Update (17): x = (B + lam D / tau') / (K + 1/tau'), D = FT of f(x~) on RELION's grid.

    `denoised` is the real-space denoised map f(x~) (ori_size^3); lam is a scalar or an array
    per shell (index round(r/pad)). With lam = 0 (or no denoised map) this is RELION's own MAP
    reconstruction. minres_map=5 is relion_refine's default; relion_external_reconstruct
    uses -1 (prior on every shell).
    """
    rec = Reconstructor(job, gridding_iterations)
    extra = None
    lam_arr = np.asarray(lam, dtype=np.float64)
    if denoised is not None and np.any(lam_arr != 0):
        d_p = rec.to_p(map_to_fourier(denoised, job.pad))
        inv_tau = rec.prior(rec.to_p(k), minres_map)
        if lam_arr.ndim == 0:
            lam_vox = float(lam_arr)
        else:
            lam_vox = lam_arr[np.minimum(rec.ires_p, len(lam_arr) - 1)]
        extra = lam_vox * d_p * inv_tau
    return rec.reconstruct(b, k, numerator_extra=extra, minres_map=minres_map)


def final_output(folder, suffix, root="run"):
    """RELION's final file (no _itNNN) of a refinement, e.g. 'class001.mrc', or None.

    After a continuation RELION writes under another root (run_ct5_...); the newest wins.
    """
    import glob

    cands = [f for f in glob.glob(os.path.join(folder, f"{root}*_{suffix}"))
             if "_it" not in os.path.basename(f)]
    return max(cands, key=os.path.getmtime) if cands else None


def last_optimiser(folder, root="run"):
    """(path, iteration) of the newest *_itNNN_optimiser.star of an unfinished refinement.

    None when nothing was written yet or the refinement already finished.
    """
    import glob
    import re

    files = glob.glob(os.path.join(folder, f"{root}*_it[0-9][0-9][0-9]_optimiser.star"))
    if not files or final_output(folder, "class001.mrc", root):
        return None
    best = max(files, key=lambda f: (int(re.search(r"_it(\d{3})_optimiser", f).group(1)),
                                     os.path.getmtime(f)))
    return best, int(re.search(r"_it(\d{3})_optimiser", best).group(1))


def write_result(job, vol, pixel_size=0.0):
    write_map(job.result, vol, pixel_size)


def cleanup(job):
    """Remove RELION's large intermediate files (RELION never deletes them)."""
    for path in job.all_files():
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
