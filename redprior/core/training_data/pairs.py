"""Training pairs (noisy map x~, target) for the RED denoiser (Kimanius et al. 2021, sec. 3.1).

Three ways to make x~, all with the paper's target: the ground truth low-passed by the
(smoothed) half-map FSC of x~ (appendix A: the MMSE denoiser then maps x~ to a weighted
combination of low-pass filtered ground truths, which is what update (17) needs):
  * gaussian.gaussian_noise_pair: gt + Gaussian noise shaped by a radial noise power profile
    and damped in the solvent by a soft mask (the paper's second training set); ~0.15 s per
    pair at 64^3;
  * recorded.pair_from_record: an unregularised RELION map x~ = B/K saved by `redprior_exrecon
    --record` during a refinement of simulated particles (the paper's main training set);
  * perturbed.perturbed_pose_pair: two half-map reconstructions of simulated particles whose
    poses are off by given angular / shift errors (a cheap stand-in for a refinement's
    misalignment); ~5 s per 1000 particles at 64^3 for both halves (each half can be stored
    as a pair).
Each returns a `Pair` (this module) that unpacks as (x, target, fsc, resolution) and carries
.seconds (its cost) and .mode. store.PairStore keeps pairs on disk, one small .npz each, and
streams them back; costs sums up what they cost.

Pure numpy (+ finufft through core.simulation.particles).
"""
import numpy as np

from redprior.core.fourier.filters import shell_filter

FSC_THRESHOLD = 0.143  # nominal resolution as RELION's gold-standard FSC (and core.prior.schedule) reads it


class Pair(tuple):
    """(x, target, fsc, resolution) with the cost (.seconds), the .mode and extra .info."""

    def __new__(cls, x, target, fsc, resolution, seconds=0.0, mode="", **info):
        self = super().__new__(cls, (x, target, fsc, resolution))
        self.seconds = float(seconds)
        self.mode = mode
        self.info = info
        return self

    x = property(lambda self: self[0])
    target = property(lambda self: self[1])
    fsc = property(lambda self: self[2])
    resolution = property(lambda self: self[3])


def structure_rng(seed, index):
    """The random generator of the pairs of structure `index`: the same whatever ran before."""
    return np.random.default_rng([seed, index])


# ------------------------------------------------------------------------------ targets
def smooth_curve(curve, window=6):
    """Running mean over `window` shells, normalised at the ends (a flat curve stays flat)."""
    c = np.asarray(curve, dtype=np.float64)
    window = int(min(window or 1, len(c)))
    if window <= 1:
        return c.copy()
    k = np.ones(window)
    return np.convolve(c, k, mode="same") / np.convolve(np.ones_like(c), k, mode="same")


def fsc_weights(fsc_curve, smooth=6):
    """The per-shell filter of the targets: running-mean smoothed FSC, clipped to [0, 1]."""
    return np.clip(smooth_curve(fsc_curve, smooth), 0.0, 1.0)


def fsc_filtered_target(gt, fsc_curve, smooth=6):
    """Ground truth with its Fourier transform multiplied per shell by the smoothed FSC.

    Shells beyond the end of the curve (the cube's corners) are set to zero.
    """
    return shell_filter(np.asarray(gt, dtype=np.float64), fsc_weights(fsc_curve, smooth))
