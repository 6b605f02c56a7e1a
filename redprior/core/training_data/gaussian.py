"""Gaussian-noise training pairs (Kimanius et al. 2021, the second training set) and the
radial spectra that shape their noise.

x~ = gt + Gaussian noise whose radial power puts the half-map FSC crossing at a chosen
nominal resolution, damped in the solvent by a soft mask; the target is the FSC-filtered ground
truth (pairs.fsc_filtered_target). ~0.15 s per pair at 64^3. Pure numpy.
"""
import time

import numpy as np

from redprior.core.fourier.grid import shell_index
from redprior.core.fourier.filters import rfft_centred, shell_filter
from redprior.core.fourier.fsc import fsc as fsc_curve_of
from redprior.core.fourier.fsc import read_resolution
from redprior.core.geometry.masks import solvent_mask
from redprior.core.training_data.pairs import FSC_THRESHOLD, Pair, fsc_filtered_target

# RELION's x~ only holds data up to its current image size: the resolution plus
# `incr_size` (10) shells. Gaussian-noise pairs can mimic that with extra_shells=10.
RELION_INCR_SHELLS = 10


# ------------------------------------------------------------------- noise and spectra
def radial_power(vol):
    """Mean |rfftn|^2 per shell round(|k|) for every shell of the box, corners included."""
    n = vol.shape[0]
    shells = shell_index(n, vol.ndim).ravel()
    p = np.abs(rfft_centred(np.asarray(vol, dtype=np.float64))).ravel() ** 2
    counts = np.bincount(shells)
    return np.bincount(shells, p) / np.maximum(counts, 1)


def shaped_noise(n, noise_profile, rng):
    """Gaussian noise whose expected |rfftn|^2 per voxel of shell s is noise_profile[s]."""
    shells = shell_index(n, 3)
    prof = np.zeros(shells.max() + 1)
    m = min(len(noise_profile), len(prof))
    prof[:m] = np.maximum(np.asarray(noise_profile, dtype=np.float64)[:m], 0.0)
    prof[0] = 0.0  # keep the map's mean: a DC offset is not noise a reconstruction shows
    white = np.fft.rfftn(rng.standard_normal((n, n, n)))  # E|F|^2 = n^3 per voxel
    return np.fft.fftshift(np.fft.irfftn(white * np.sqrt(prof / n ** 3)[shells], s=(n, n, n)))


def noise_profile_for_resolution(gt, pixel_size, resolution, width=1.5, min_ssnr=1e-4):
    """Radial noise power that puts the half-map FSC 0.143 crossing of gt + noise at `resolution`.

    The spectral SNR per shell k is SSNR(k) = S0 exp(-beta (k^2 - k0^2)), a Gaussian
    (B-factor-like) fall-off as in refinement intermediates, with k0 = box * pixel / resolution
    and S0 = 0.143 / 0.857 (half-map FSC = SSNR / (1 + SSNR)). `width` is the frequency ratio
    between the FSC 0.9 and the 0.143 crossings (sharper fall-off for smaller values);
    noise power = signal power / SSNR. SSNR is floored at `min_ssnr` beyond the resolution.
    """
    n = gt.shape[0]
    if width <= 1.0:
        raise ValueError(f"width must be > 1 (ratio of two frequencies), got {width}.")
    k0 = n * float(pixel_size) / float(resolution)
    s0 = FSC_THRESHOLD / (1.0 - FSC_THRESHOLD)
    beta = np.log(9.0 / s0) / (k0 ** 2 * (1.0 - 1.0 / width ** 2))
    signal = radial_power(gt)
    k = np.arange(len(signal), dtype=np.float64)
    ssnr = s0 * np.exp(np.clip(-beta * (k ** 2 - k0 ** 2), np.log(min_ssnr / s0), 50.0))
    return signal / ssnr


def measured_noise_profile(noisy, gt):
    """Radial noise power of a real intermediate map against its (aligned, same-scale) truth.

    The paper shapes its Gaussian-noise set 'to match the noise profile estimated from
    RELION intermediates'; this is that estimate, usable as `noise_profile`.
    """
    return radial_power(np.asarray(noisy, dtype=np.float64) - gt)


def max_resolution(box, pixel_size):
    """Finest nominal resolution a box can show: the 0.143 crossing must fit below Nyquist."""
    return box * float(pixel_size) / (box // 2 - 1)


def random_resolution(rng, box, pixel_size, low=3.0, high=30.0):
    """A nominal resolution drawn log-uniformly in [low, high] A (clamped to what fits the box)."""
    lo = max(float(low), max_resolution(box, pixel_size))
    hi = max(float(high), lo)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _limit_shells(vol, kmax):
    prof = np.zeros(vol.shape[0])
    prof[:int(kmax) + 1] = 1.0
    return shell_filter(vol, prof)


def gaussian_noise_pair(gt, noise_profile, mask=None, rng=None, pixel_size=1.0,
                        solvent_noise=0.3, extra_shells=None, smooth=6):
    """gt + shaped Gaussian noise, damped in the solvent (Kimanius et al., 2nd training set).

    noise_profile: expected noise |rfftn|^2 per voxel for each shell (see
    noise_profile_for_resolution, measured_noise_profile).
    mask: soft solvent mask in [0, 1] (e.g. masks.solvent_mask(gt, pixel_size)); the real-space
    noise is multiplied by solvent_noise + (1 - solvent_noise) * mask, then refiltered to the
    profile's radial power, so the profile still sets the FSC. None: no damping.
    extra_shells: like RELION's current image size, keep only shells up to the nominal
    resolution + this many (None: all).
    The FSC is measured, as RELION's gold-standard one, between two maps with independent
    noise; x is the first of them. Returns Pair(x, target, fsc, resolution).
    """
    t0 = time.time()
    rng = np.random.default_rng(rng)
    gt = np.asarray(gt, dtype=np.float64)
    n = gt.shape[0]
    damp = None
    if mask is not None:
        damp = solvent_noise + (1.0 - solvent_noise) * np.clip(mask, 0.0, 1.0)
    halves = []
    for _ in range(2):
        noise = shaped_noise(n, noise_profile, rng)
        if damp is not None:
            # Damping convolves the spectrum with the mask's: the steep high-frequency noise
            # leaks into low shells and the FSC crossing lands far too coarse. Re-impose the
            # radial profile afterwards (a radial filter keeps the damping mostly in place).
            noise *= damp
            have = radial_power(noise)
            want = np.zeros_like(have)
            m = min(len(want), len(noise_profile))
            want[:m] = np.asarray(noise_profile[:m], dtype=np.float64)
            want[0] = 0.0
            noise = shell_filter(noise, np.sqrt(want / np.maximum(have, 1e-300)))
        halves.append(gt + noise)
    fsc = fsc_curve_of(*halves)
    resolution = read_resolution(fsc, n, pixel_size, FSC_THRESHOLD).bound_A
    if extra_shells is not None and np.isfinite(resolution):
        kmax = n * pixel_size / resolution + extra_shells
        if kmax < n // 2:
            halves = [_limit_shells(h, kmax) for h in halves]
            fsc = fsc_curve_of(*halves)
    target = fsc_filtered_target(gt, fsc, smooth)
    return Pair(halves[0].astype(np.float32), target, fsc.astype(np.float32), float(resolution),
                time.time() - t0, "gaussian")


def gaussian_pairs(gt, pixel_size, count, rng=None, low=3.0, high=30.0, mask=None,
                   width_range=(1.3, 2.0), **kw):
    """`count` Gaussian-noise pairs of one structure with nominal resolutions drawn
    log-uniformly in [low, high] A (the paper's intermediates span ~3-30 A) and random
    fall-off widths; keyword arguments go to gaussian_noise_pair."""
    rng = np.random.default_rng(rng)
    for _ in range(int(count)):
        d = random_resolution(rng, gt.shape[0], pixel_size, low, high)
        prof = noise_profile_for_resolution(gt, pixel_size, d, rng.uniform(*width_range))
        yield gaussian_noise_pair(gt, prof, mask, rng, pixel_size, **kw)


def solvent_damped_pairs(gt, pixel_size, count, rng=None, low=3.0, high=30.0,
                         solvent_noise=0.3, limit_shells=True):
    """gaussian_pairs as 'training maps' makes them: noise damped outside
    masks.solvent_mask(gt, pixel_size) and, with limit_shells, only the shells RELION's
    current image size holds (RELION_INCR_SHELLS beyond the nominal resolution)."""
    mask = solvent_mask(gt, pixel_size)
    extra = RELION_INCR_SHELLS if limit_shells else None
    return gaussian_pairs(gt, pixel_size, count, rng, low, high, mask,
                          solvent_noise=solvent_noise, extra_shells=extra)
