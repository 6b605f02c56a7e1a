"""Perturbed-pose training pairs: half-maps of simulated particles reconstructed at poses off
by random angular and shift errors (a cheap stand-in for a refinement's misalignment).

~5 s per 1000 particles at 64^3 for both halves; each half can be stored as a pair (same
target and FSC). Pure numpy (+ finufft through core.simulation.particles).
"""
import time

import numpy as np

from redprior.core.fourier.fsc import fsc as fsc_curve_of
from redprior.core.fourier.fsc import read_resolution
from redprior.core.training_data.pairs import FSC_THRESHOLD, Pair, fsc_filtered_target


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



def random_angle_error(rng, low, high):
    """An rms angular error (deg) drawn log-uniformly in [low, high] (low if high <= low)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else low


def perturbed_pose_pairs(gt, pixel_size, count, rng=None, angle_error_range=(1.0, 10.0),
                         both_halves=True, **kw):
    """`count` perturbed-pose pairs of one structure, each reconstruction at an rms angular
    error drawn by random_angle_error in angle_error_range; keyword arguments go to
    perturbed_pose_pair (n_particles, snr, shift_error_A, ...).

    With both_halves, the other half-map of each reconstruction follows it as a pair of its
    own (same target, FSC and resolution; .info other_half=True), so a reconstruction gives
    two pairs for the cost of one.
    """
    rng = np.random.default_rng(rng)
    low, high = angle_error_range
    made = 0
    while made < count:
        p = perturbed_pose_pair(gt, pixel_size, angle_error_deg=random_angle_error(rng, low, high),
                                rng=rng, **kw)
        yield p
        made += 1
        if both_halves and made < count:
            yield Pair(p.info["x2"], p.target, p.fsc, p.resolution, 0.0, p.mode,
                       other_half=True, angle_error_deg=p.info["angle_error_deg"])
            made += 1
