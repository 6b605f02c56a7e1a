"""Update (17) of Kimanius et al. 2021: the RED M-step on RELION's data term and weight.

    x = (B + lambda F[f(x~)] / tau') / (K + 1/tau'),   x~ = B / K (no prior),

where 1/tau' is RELION's own prior term 1/(pad^3 fudge tau2) (relion.reconstruct.Reconstructor
.prior) and f the denoiser. With lambda = 0 the update is RELION's MAP reconstruction. Both
functions take the call's Reconstructor, so its grids and blob are built once per call.
"""
import numpy as np

from redprior.core.relion.reconstruct import map_to_fourier, padded_grid_shells, prior_term


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
    """The term update (17) adds to B: lambda F[f(x~)] / tau' on RELION's padded grid M (the
    layout of its B file), in k's precision; 0 where RELION has no data or no prior."""
    ires, inside = padded_grid_shells(job)
    dtype = np.float32 if k.dtype == np.float32 else np.float64
    term = map_to_fourier(denoised, job.pad, dtype)
    term *= prior_term(job, k, ires, inside, minres_map)
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
        extra = rec.to_p(red_numerator(rec.job, k, denoised, lam, minres_map))
    return rec.reconstruct(b, k, numerator_extra=extra, minres_map=minres_map)
