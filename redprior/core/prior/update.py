"""Update (17) of Kimanius et al. 2021: the RED M-step on RELION's data term and weight.

    x = (B + lambda F[f(x~)] / tau') / (K + 1/tau'),   x~ = B / K (no prior),

where 1/tau' is RELION's own prior term 1/(pad^3 fudge tau2) (relion.reconstruct.Reconstructor
.prior) and f the denoiser. With lambda = 0 the update is RELION's MAP reconstruction. Both
functions take the call's Reconstructor, so its grids and blob are built once per call.
"""
import numpy as np

from redprior.core.fourier.pruned import add_band_block, band_block
from redprior.core.relion.reconstruct import (data_band, map_to_fourier, padded_grid_shells,
                                              prior_term)


def unregularised_map(rec, b, k):
    """x~ = B/K in real space (no prior), the denoiser's input."""
    return rec.reconstruct(b, k, do_map=False)


def lambda_per_voxel(ires, lam):
    """A scalar lambda, or lambda per shell (index round(r/pad)) spread over a grid's shells."""
    lam_arr = np.asarray(lam, dtype=np.float64)
    if lam_arr.ndim == 0:
        return float(lam_arr)
    return lam_arr[np.minimum(ires, len(lam_arr) - 1)]


def red_numerator(job, k, denoised, lam, minres_map=5):
    """The term update (17) adds to B: lambda F[f(x~)] / tau', in k's precision, as the band
    block (core.fourier.pruned, band relion.reconstruct.data_band) of RELION's padded grid M
    (the layout of its B file): RELION has no data outside it. 0 where RELION has no data or
    no prior. Add it to B with core.fourier.pruned.add_band_block."""
    ires, inside = padded_grid_shells(job)
    band = data_band(job)
    dtype = np.float32 if k.dtype == np.float32 else np.float64
    term = map_to_fourier(denoised, job.pad, dtype, band)
    term *= prior_term(job, band_block(k, band), ires, inside, minres_map)
    lam_v = lambda_per_voxel(ires, lam)
    term *= lam_v.astype(dtype) if isinstance(lam_v, np.ndarray) else dtype(lam_v)
    return term


def red_update(rec, b, k, denoised=None, lam=0.0, minres_map=5):
    """Update (17) with `denoised` = f(x~) (real space, ori_size^3) and lambda scalar or per shell.

    minres_map=5 is relion_refine's default; relion_external_reconstruct uses -1 (prior on
    every shell). With lam = 0 (or no denoised map) this is RELION's own MAP reconstruction.
    """
    extra = None
    if denoised is not None and np.any(np.asarray(lam) != 0):
        extra = np.zeros_like(k, dtype=np.complex64 if k.dtype == np.float32 else np.complex128)
        add_band_block(extra, red_numerator(rec.job, k, denoised, lam, minres_map))
        extra = rec.to_p(extra)
    return rec.reconstruct(b, k, numerator_extra=extra, minres_map=minres_map)
