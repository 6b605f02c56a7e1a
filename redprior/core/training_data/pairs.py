"""Training pairs (noisy map x~, target) for the RED denoiser (Kimanius et al. 2021, sec. 3.1).

Three ways to make x~, all with the paper's target: the ground truth low-passed by the
(smoothed) half-map FSC of x~ (appendix A: the MMSE denoiser then maps x~ to a weighted
combination of low-pass filtered ground truths, which is what update (17) needs):
  * gaussian_noise_pair: gt + Gaussian noise shaped by a radial noise power profile and damped
    in the solvent by a soft mask (the paper's second training set); ~0.15 s per pair at 64^3;
  * pair_from_record: an unregularised RELION map x~ = B/K saved by `redprior_exrecon
    --record` during a refinement of simulated particles (the paper's main training set);
  * perturbed_pose_pair: two half-map reconstructions of simulated particles whose poses are
    off by given angular / shift errors (a cheap stand-in for a refinement's misalignment);
    ~5 s per 1000 particles at 64^3 for both halves (each half can be stored as a pair).
Each returns a `Pair` that unpacks as (x, target, fsc, resolution) and carries .seconds (its
cost) and .mode. `PairStore` keeps pairs on disk, one small .npz each, and streams them back.

Pure numpy (+ finufft through core.simulation.particles); TensorFlow only in PairStore.tf_dataset.
"""
import glob
import json
import os
import tempfile
import time

import numpy as np

from redprior.core.fourier.grid import shell_index
from redprior.core.fourier.filters import rfft_centred, shell_filter
from redprior.core.fourier.fsc import fsc as fsc_curve_of
from redprior.core.fourier.fsc import read_resolution

FSC_THRESHOLD = 0.143  # nominal resolution as RELION's gold-standard FSC (and core.prior.schedule) reads it
# RELION's x~ only holds data up to its current image size: the resolution plus
# `incr_size` (10) shells. Gaussian-noise pairs can mimic that with extra_shells=10.
RELION_INCR_SHELLS = 10


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


# --------------------------------------------------------------------- RELION records
def _load_fsc_json(fsc_json):
    if isinstance(fsc_json, dict):
        return fsc_json
    with open(fsc_json) as fh:
        return json.load(fh)


def pair_from_record(unreg_map, fsc_json, gt, pixel_size=None, smooth=6, fit_scale=True):
    """A pair from `redprior_exrecon --record` output: itNNN_halfH_unreg.mrc + itNNN_halfH_fsc.json.

    unreg_map: path or array (x~ = B/K of one half); fsc_json: path or the loaded dict
    (keys fsc, resolution, pixel_size); gt: the simulation's ground truth on the same grid.
    RELION's maps carry the particles' intensity scale and offset, so (fit_scale) x~ ~ a gt + b
    is fitted by least squares (the noise is independent of gt, so a is unbiased) and the
    target is a * FSC-filtered gt + b.
    """
    t0 = time.time()
    if isinstance(unreg_map, (str, os.PathLike)):
        from redprior.core.io.mrc import read_map
        x, px_file = read_map(os.fspath(unreg_map))
    else:
        x, px_file = np.asarray(unreg_map, dtype=np.float32), 0.0
    info = _load_fsc_json(fsc_json)
    gt = np.asarray(gt, dtype=np.float64)
    if x.shape != gt.shape:
        raise ValueError(f"The recorded map has shape {x.shape} but the ground truth {gt.shape}; "
                         "give the ground truth on the refinement's grid (box and pixel size).")
    px = float(pixel_size or info.get("pixel_size") or px_file or 1.0)
    fsc = np.asarray(info["fsc"], dtype=np.float64)
    resolution = info.get("resolution")
    if resolution is None:
        resolution = read_resolution(fsc, x.shape[0], px, FSC_THRESHOLD).bound_A
    target = fsc_filtered_target(gt, fsc, smooth)
    a, b = 1.0, 0.0
    if fit_scale:
        g = gt - gt.mean()
        a = float(np.sum((x - x.mean()) * g) / max(np.sum(g * g), 1e-30))
        b = float(x.mean() - a * gt.mean())
        target = (a * target + b).astype(np.float32)
    return Pair(x.astype(np.float32), target, fsc.astype(np.float32), float(resolution),
                time.time() - t0, "record", scale=a, offset=b, pixel_size=px)


def record_files(folder):
    """(unreg.mrc, fsc.json) pairs of a --record folder, in iteration/half order."""
    out = []
    for m in sorted(glob.glob(os.path.join(folder, "it*_half*_unreg.mrc"))):
        j = m[:-len("_unreg.mrc")] + "_fsc.json"
        if os.path.exists(j):
            out.append((m, j))
    return out


# ------------------------------------------------------------ perturbed-pose halves
def _rotation_errors(m, rms_deg, rng):
    """m rotations with a uniformly random axis and rms angle rms_deg (rotation-vector form)."""
    w = rng.standard_normal((m, 3)) * np.deg2rad(rms_deg) / np.sqrt(3.0)
    th = np.linalg.norm(w, axis=1)
    axis = w / np.maximum(th, 1e-12)[:, None]
    K = np.zeros((m, 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    K -= K.transpose(0, 2, 1)
    s, c = np.sin(th)[:, None, None], np.cos(th)[:, None, None]
    return np.eye(3) + s * K + (1 - c) * K @ K  # Rodrigues


def insert_slices(fts, R, n, ctf=None, batch=128):
    """Direct Fourier inversion: trilinear insertion of central slices, then B / K.

    fts: (m, n, n//2+1) rfft2 of centred images; R: (m, 3, 3) RELION matrices (the slice of
    image i is V(R_i^T (kx, ky, 0))); ctf: optional (m, n, n//2+1) CTF (B += ctf y,
    K += ctf^2). Returns the centred real-space map (no prior: RELION's x~ without gridding
    correction; the normalised weights make each voxel a local weighted mean, so no
    real-space apodisation to undo at this accuracy).
    """
    from redprior.core.fourier.grid import frequency_axes

    nh = n // 2 + 1
    KY, KX = frequency_axes(n, 2)
    inside = (KX ** 2 + KY ** 2) < (n / 2.0) ** 2
    kx, ky = KX[inside], KY[inside]
    size = n * n * nh
    b_re, b_im, kw = np.zeros(size), np.zeros(size), np.zeros(size)
    for s in range(0, len(R), batch):
        Rb = R[s:s + batch]
        fx = Rb[:, 0, 0, None] * kx + Rb[:, 1, 0, None] * ky
        fy = Rb[:, 0, 1, None] * kx + Rb[:, 1, 1, None] * ky
        fz = Rb[:, 0, 2, None] * kx + Rb[:, 1, 2, None] * ky
        vals = fts[s:s + batch][:, inside]
        w = np.ones(vals.shape) if ctf is None else ctf[s:s + batch][:, inside]
        data, wt = vals * w, w * w
        # only kx >= 0 is stored: use the Friedel mate for points on the other side
        neg = fx < 0
        fx, fy, fz = np.where(neg, -fx, fx), np.where(neg, -fy, fy), np.where(neg, -fz, fz)
        data = np.where(neg, np.conj(data), data)
        x0, y0, z0 = np.floor(fx), np.floor(fy), np.floor(fz)
        dx, dy, dz = fx - x0, fy - y0, fz - z0
        x0, y0, z0 = x0.astype(np.int64), y0.astype(np.int64), z0.astype(np.int64)
        for cz in (0, 1):
            wz = dz if cz else 1 - dz
            for cy in (0, 1):
                wy = dy if cy else 1 - dy
                for cx in (0, 1):
                    wgt = (wz * wy * (dx if cx else 1 - dx)).ravel()
                    idx = ((((z0 + cz) % n) * n + (y0 + cy) % n) * nh + (x0 + cx)).ravel()
                    b_re += np.bincount(idx, wgt * data.real.ravel(), size)
                    b_im += np.bincount(idx, wgt * data.imag.ravel(), size)
                    kw += np.bincount(idx, wgt * wt.ravel(), size)
    B = (b_re + 1j * b_im).reshape(n, n, nh)
    K = kw.reshape(n, n, nh)
    # the kx = 0 (and Nyquist) planes hold both members of each Friedel pair: merge them
    for p in ([0, nh - 1] if n % 2 == 0 else [0]):
        mate = lambda a: np.roll(a[::-1, ::-1], 1, axis=(0, 1))  # a[-kz, -ky]
        Bp, Kp = B[:, :, p].copy(), K[:, :, p].copy()
        B[:, :, p] = Bp + np.conj(mate(Bp))
        K[:, :, p] = Kp + mate(Kp)
    F = np.where(K > 1e-9 * K.max(), B / np.where(K > 0, K, 1.0), 0.0)
    return np.fft.fftshift(np.fft.irfftn(F, s=(n, n, n)))


def perturbed_pose_pair(gt, pixel_size, n_particles=1000, snr=0.05, angle_error_deg=2.0,
                        shift_error_A=0.5, rng=None, ctf=None, smooth=6):
    """Half-map x~ from simulated particles reconstructed at perturbed poses.

    Particles are simulated (core.simulation.particles, true poses, white noise at `snr`, optional CTF)
    and split in two random halves; each particle's orientation is then off by a rotation
    about a random axis with rms angle `angle_error_deg` and its origin by an in-plane shift
    with rms length `shift_error_A`, and each half is reconstructed at these wrong poses.
    The FSC of the two halves gives the nominal resolution and the target filter.
    Reconstruction: direct Fourier insertion in numpy (insert_slices), not relion_reconstruct:
    no process start, STAR/stack writing and reading per pair (the particles are already in
    memory), no RELION needed, and a few bincounts per batch; its trilinear gridding is
    blurrier than RELION's at the highest shells, but the FSC it gives describes exactly the
    map that is stored, so the target stays consistent.
    Returns Pair(x_half1, target, fsc, resolution) with info x2 (the other half).
    """
    from redprior.core.simulation.particles import euler_to_matrix, shift_phases, simulate_particles, ctf_2d

    t0 = time.time()
    rng = np.random.default_rng(rng)
    gt = np.asarray(gt, dtype=np.float64)
    n = gt.shape[0]
    sim = simulate_particles(gt, pixel_size, n_particles, snr=snr, ctf=ctf,
                             seed=int(rng.integers(2 ** 31)))
    m = len(sim)
    R_true = euler_to_matrix(sim.rot, sim.tilt, sim.psi)
    R_est = _rotation_errors(m, angle_error_deg, rng) @ R_true
    shift_est = np.stack([sim.shift_x_A, sim.shift_y_A], 1)
    shift_est = shift_est + rng.standard_normal((m, 2)) * shift_error_A / np.sqrt(2.0)
    fts = np.fft.rfft2(np.fft.ifftshift(sim.images.astype(np.float64), axes=(-2, -1)))
    fts *= shift_phases(n, shift_est / pixel_size)  # re-centre with the estimated origin
    ctfs = None
    if sim.ctf:
        ctfs = ctf_2d(n, pixel_size, sim.defocus_u, sim.defocus_v, sim.defocus_angle,
                      sim.ctf["voltage"], sim.ctf["cs"], sim.ctf["amp_contrast"])
    half = rng.permutation(m) % 2
    maps = []
    for h in (0, 1):
        sel = half == h
        maps.append(insert_slices(fts[sel], R_est[sel], n,
                                  None if ctfs is None else ctfs[sel]))
    fsc = fsc_curve_of(*maps)
    resolution = read_resolution(fsc, n, pixel_size, FSC_THRESHOLD).bound_A
    target = fsc_filtered_target(gt, fsc, smooth)
    return Pair(maps[0].astype(np.float32), target, fsc.astype(np.float32), float(resolution),
                time.time() - t0, "perturbed_pose", x2=maps[1].astype(np.float32),
                angle_error_deg=float(angle_error_deg), shift_error_A=float(shift_error_A))


# -------------------------------------------------------------------------- the store
class PairStore:
    """A folder of training pairs: pair_NNNNNN.npz (x, target, fsc, resolution, structure,
    pixel_size, mode) plus manifest.json (box, pixel size and one small entry per pair).

    Pairs are read back one at a time (iter_pairs, batches in core.denoiser.training, tf_dataset), so
    training never holds the whole set in memory. All pairs of a store share box and pixel
    size (the denoiser is trained at one of each). The manifest is rewritten every
    `flush_every` additions and on close(); pairs written after the last flush (a crash) are
    found again when the store is opened.
    """

    MANIFEST = "manifest.json"

    def __init__(self, folder, flush_every=50):
        self.folder = os.fspath(folder)
        self.flush_every = int(flush_every)
        os.makedirs(self.folder, exist_ok=True)
        self.box, self.pixel_size, self.entries = None, None, []
        self._dirty = 0
        path = os.path.join(self.folder, self.MANIFEST)
        if os.path.exists(path):
            with open(path) as fh:
                man = json.load(fh)
            self.box, self.pixel_size = man.get("box"), man.get("pixel_size")
            self.entries = list(man.get("pairs", []))
        self._recover()

    def _recover(self):
        known = {e["file"] for e in self.entries}
        for f in sorted(glob.glob(os.path.join(self.folder, "pair_*.npz"))):
            name = os.path.basename(f)
            if name in known:
                continue
            with np.load(f) as z:
                entry = dict(file=name, structure=str(z["structure"]),
                             resolution=float(z["resolution"]), mode=str(z["mode"]),
                             pixel_size=float(z["pixel_size"]))
                if self.box is None:
                    self.box, self.pixel_size = int(z["x"].shape[0]), entry["pixel_size"]
            self.entries.append(entry)
            self._dirty += 1
        if self._dirty:
            self.flush()

    def __len__(self):
        return len(self.entries)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add(self, x, target, fsc, resolution, structure, pixel_size, mode=""):
        """Write one pair; returns its index."""
        x = np.asarray(x, dtype=np.float32)
        n = x.shape[0]
        if self.box is None:
            self.box, self.pixel_size = int(n), float(pixel_size)
        if n != self.box or abs(float(pixel_size) - self.pixel_size) > 1e-6 * self.pixel_size:
            raise ValueError(f"Pair of box {n} at {pixel_size:g} A/px does not fit store "
                             f"{self.folder} (box {self.box} at {self.pixel_size:g} A/px); "
                             "resample the maps or use another store.")
        idx = len(self.entries)
        name = f"pair_{idx:06d}.npz"
        while os.path.exists(os.path.join(self.folder, name)):  # a pair after a crash
            idx += 1
            name = f"pair_{idx:06d}.npz"
        res = float(resolution) if np.isfinite(resolution) else float("inf")
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=self.folder, prefix=".tmp_")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=x, target=np.asarray(target, dtype=np.float32),
                     fsc=np.asarray(fsc, dtype=np.float32), resolution=res,
                     structure=str(structure), pixel_size=float(pixel_size), mode=str(mode))
        os.replace(tmp, os.path.join(self.folder, name))
        self.entries.append(dict(file=name, structure=str(structure), resolution=res,
                                 mode=str(mode), pixel_size=float(pixel_size)))
        self._dirty += 1
        if self._dirty >= self.flush_every:
            self.flush()
        return len(self.entries) - 1

    def add_pair(self, pair, structure, pixel_size):
        return self.add(pair[0], pair[1], pair[2], pair[3], structure, pixel_size,
                        getattr(pair, "mode", ""))

    def flush(self):
        man = dict(version=1, box=self.box, pixel_size=self.pixel_size, pairs=self.entries)
        path = os.path.join(self.folder, self.MANIFEST)
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=self.folder, prefix=".tmp_")
        with os.fdopen(fd, "w") as fh:
            json.dump(man, fh, allow_nan=True)
        os.replace(tmp, path)
        self._dirty = 0

    close = flush

    def structures(self):
        return sorted({e["structure"] for e in self.entries})

    def resolutions(self, indices=None):
        idx = range(len(self)) if indices is None else indices
        return np.array([self.entries[i]["resolution"] for i in idx], dtype=np.float64)

    def load(self, i):
        e = self.entries[i]
        with np.load(os.path.join(self.folder, e["file"])) as z:
            return dict(x=z["x"], target=z["target"], fsc=z["fsc"],
                        resolution=float(z["resolution"]), structure=str(z["structure"]),
                        pixel_size=float(z["pixel_size"]), mode=str(z["mode"]), index=i)

    def iter_pairs(self, indices=None, shuffle=False, seed=None):
        """Yield pairs one by one (dicts as load())."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if shuffle:
            idx = np.random.default_rng(seed).permutation(idx)
        for i in idx:
            yield self.load(int(i))

    def tf_dataset(self, indices=None, shuffle=True, seed=0):
        """tf.data.Dataset of (x, target) float32 (n, n, n, 1), streamed from disk."""
        import tensorflow as tf

        n = self.box
        idx = np.arange(len(self)) if indices is None else np.asarray(indices)

        def gen():
            for p in self.iter_pairs(idx, shuffle=shuffle, seed=seed):
                yield p["x"][..., None], p["target"][..., None]

        spec = tf.TensorSpec((n, n, n, 1), tf.float32)
        return tf.data.Dataset.from_generator(gen, output_signature=(spec, spec))
