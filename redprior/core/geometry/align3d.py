"""Rigid-body alignment of one map onto another: rotation, translation and hand.

Pure numpy + scipy (no Scipion). Used to bring refinements from different engines (each
with its own arbitrary frame) into one frame before their poses and maps are compared.

Conventions (RELION 3.1, as core.simulation.particles and core.geometry.rotations):
  * maps are cubic, array axes (z, y, x); a point r = (x, y, z) is measured from voxel
    N//2; shifts are in Angstrom, (x, y, z) order;
  * J = diag(1, 1, -1) is the hand flip (mirror through the xy plane);
  * `align_volumes(A, B)` returns a `FrameTransform` (R, t, h) that maps a point p of B's
    frame to R (J^h p) + t in A's frame. The aligned map is
        B'(r) = B(J^h R^T (r - t))   (see `transform_map`),  and  B' ~ A;
    equivalently B(p) = A(R J^h p + t).
  * a particle pose R_B (RELION matrix: image = sum_z V(R_B^T r)) with origin o_B
    (rlnOriginX/YAngst) that fits map B becomes, in A's frame,
        R_A = J^h R_B J^h R^T,     o_A = o_B + (R_A t)_xy          (see `transform_poses`)
    Derivation: the rotated map B(R_B^T r) = A(R J^h R_B^T r + t). For h = 1 replace r by
    J r first (a z flip does not change a projection along z), so the argument is
    R_A^T r + t = R_A^T (r + R_A t) with R_A^T = R J^h R_B^T J^h: the projection of A at
    pose R_A translated by -(R_A t)_xy. The image also carries -o_B, so o_A = o_B + (R_A t)_xy.
    This is core.geometry.rotations' convention: R_A = mirror^h(R_B) @ G with G = R^T
    (angles.align_rotation_sets finds the same G from the poses alone).
"""
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, optimize
from scipy.spatial.transform import Rotation

from redprior.core.fourier.filters import fourier_resample, lowpass
from redprior.core.fourier.grid import real_coordinates
from redprior.core.geometry.masks import spherical_mask

J = np.diag([1.0, 1.0, -1.0])

COARSE_BOX = 20          # box of the global rotation search (pixels)
FINE_BOX = 40            # largest box used for the local refinement
N_ROTATIONS = 4000       # super-Fibonacci grid: neighbours ~11 deg apart on SO(3)
N_CANDIDATES = 5         # coarse peaks refined per hand


@dataclass
class FrameTransform:
    """B -> A frame transform: p_A = R (J^h p_B) + t. See the module docstring.

    `method` says how it was found: 'volumes' (align_volumes; score = masked correlation
    of the maps), 'poses' (consensus_frames.align_pose_sets; score = fraction of common particles
    whose poses agree after the transform) or 'identity'.
    """
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    shift_A: np.ndarray = field(default_factory=lambda: np.zeros(3))
    mirrored: bool = False
    score: float = 1.0             # masked correlation of A and aligned B (chosen hand)
    score_other_hand: float = None  # the same for the best solution of the other hand
    pixel_size: float = 1.0
    method: str = 'volumes'

    @property
    def hand(self):
        return 'mirror' if self.mirrored else 'same'

    @property
    def G(self):
        """Right factor of the pose transform: R_A = mirror^h(R_B) @ G."""
        return self.rotation.T

    def apply_to_map(self, vol, order=3):
        return transform_map(vol, self.rotation, self.shift_A / self.pixel_size,
                             self.mirrored, order=order)

    def apply_to_poses(self, R, shifts_A=None):
        return transform_poses(R, shifts_A, self.rotation, self.shift_A, self.mirrored)

    def inverse(self):
        """A -> B transform (p_B = J^h R^T (p_A - t)) with the same scores."""
        Jh = J if self.mirrored else np.eye(3)
        # p_B = J^h R^T p_A - J^h R^T t; written as R' (J^h p_A) + t'
        Rinv = Jh @ self.rotation.T @ Jh
        return FrameTransform(Rinv, -(Jh @ self.rotation.T @ self.shift_A), self.mirrored,
                              self.score, self.score_other_hand, self.pixel_size, self.method)

    def to_dict(self):
        rv = Rotation.from_matrix(self.rotation).as_rotvec()
        return dict(rotation=self.rotation.tolist(), shift_A=[float(x) for x in self.shift_A],
                    mirrored=bool(self.mirrored), hand=self.hand, score=float(self.score),
                    score_other_hand=(None if self.score_other_hand is None
                                      else float(self.score_other_hand)),
                    rotation_angle_deg=float(np.rad2deg(np.linalg.norm(rv))),
                    pixel_size=float(self.pixel_size), method=self.method)

    @classmethod
    def from_dict(cls, d):
        return cls(np.array(d['rotation'], dtype=float), np.array(d['shift_A'], dtype=float),
                   bool(d['mirrored']), float(d['score']),
                   None if d.get('score_other_hand') is None else float(d['score_other_hand']),
                   float(d['pixel_size']), d.get('method', 'volumes'))


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------
def _rev(M):
    """Re-express a 3x3 matrix acting on (x, y, z) for array index order (z, y, x)."""
    return M[::-1, ::-1]


def transform_map(vol, R, shift_px=(0.0, 0.0, 0.0), mirrored=False, order=3):
    """B'(r) = B(J^h R^T (r - t)): rotate by R about voxel N//2 (after the optional hand
    flip), then translate by t (pixels, x y z). Outside the box counts as 0."""
    vol = np.asarray(vol, dtype=np.float32)
    n = vol.shape[0]
    c = np.full(3, n // 2, dtype=np.float64)
    Jh = J if mirrored else np.eye(3)
    M = _rev(Jh @ np.asarray(R, dtype=np.float64).T)          # index space, (z, y, x)
    t = np.asarray(shift_px, dtype=np.float64)[::-1]
    # input index = M (o - c - t) + c
    offset = c - M @ (c + t)
    return ndimage.affine_transform(vol, M, offset=offset, order=order, mode='constant',
                                    cval=0.0, prefilter=order > 1)


def transform_poses(R_B, shifts_B_A, rotation, shift_A, mirrored=False):
    """Poses (and origins, Angstrom) of B's frame in A's frame; see the module docstring.

    R_B: (n, 3, 3) RELION pose matrices; shifts_B_A: (n, 2) rlnOriginX/YAngst or None.
    Returns (R_A, shifts_A) (shifts_A None when shifts_B_A is None).
    """
    R_B = np.asarray(R_B, dtype=np.float64).reshape(-1, 3, 3)
    if mirrored:
        R_B = J @ R_B @ J
    R_A = R_B @ np.asarray(rotation, dtype=np.float64).T
    if shifts_B_A is None:
        return R_A, None
    o = np.asarray(shifts_B_A, dtype=np.float64).reshape(-1, 2)
    return R_A, o + (R_A @ np.asarray(shift_A, dtype=np.float64))[:, :2]


def mirror_map(vol):
    """V'(x, y, z) = V(x, y, -z) about voxel N//2 (the J of this module)."""
    # even N: index i -> (N - i) mod N keeps voxel N//2 in place; odd N: plain reversal
    return np.roll(np.asarray(vol)[::-1], 1, axis=0) if vol.shape[0] % 2 == 0 \
        else np.asarray(vol)[::-1].copy()


def uniform_rotation_grid(n):
    """n quasi-uniform rotations (super-Fibonacci spiral on unit quaternions, Alexa 2022).

    Deterministic. For n = 4000 (measured): nearest neighbours 9.5-12 degrees apart, every
    rotation within 13.5 degrees of a grid point; spacing scales as n^(-1/3).
    """
    phi, psi = np.sqrt(2.0), 1.533751168755204288118041
    s = np.arange(n) + 0.5
    r, R = np.sqrt(s / n), np.sqrt(1.0 - s / n)
    a, b = 2 * np.pi * s / phi, 2 * np.pi * s / psi
    q = np.stack([r * np.sin(a), r * np.cos(a), R * np.sin(b), R * np.cos(b)], axis=1)
    return Rotation.from_quat(q).as_matrix()


# ---------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------
def _even(n):
    return int(n) - int(n) % 2


def _prepare(vol, pixel, box, radius_frac=0.45):
    """(map resampled to an even box <= `box`, low-passed to 0.8 Nyquist, masked by a soft
    sphere, zero mean and unit norm; its pixel size; the mask)."""
    n = vol.shape[0]
    box = _even(min(n, box))     # even: _coarse_search's inversion needs it
    small = fourier_resample(np.asarray(vol, dtype=np.float64), box) if box < n \
        else np.asarray(vol, dtype=np.float32)
    px = pixel * n / box
    small = lowpass(small, px, 2.0 * px / 0.8, edge_shells=2.0)
    mask = spherical_mask(box, radius_frac * box, soft_px=2)
    m = mask > 0.5
    small = (small - small[m].mean()) * mask
    norm = np.sqrt((small.astype(np.float64) ** 2).sum())
    if norm <= 0:
        raise ValueError("A map to align is constant (zero variance inside the mask).")
    return (small / norm).astype(np.float32), px, mask


def _coarse_search(a, b, rotations, max_shift_px, support_px, batch=64):
    """Score every rotation of b (about the centre) against a, best FFT translation each,
    for both hands.

    Returns scores (2, m) and translations (2, m, 3) (pixels, x y z). Row 0: b(R^T r) (same
    hand). Row 1: the inverted map b(-R^T r), whose Fourier transform is the complex
    conjugate of the rotated map's (real maps; on an even grid the inversion about voxel
    N//2 is the cyclic one), so the other hand costs no interpolation. Inversion is
    J Rz(180): row 1 is the mirrored solution with rotation R Rz(180).
    Only voxels within support_px of the centre (where the masked maps live) are sampled.
    """
    n = a.shape[0]
    c = n // 2
    xyz = real_coordinates(n)
    inside = np.flatnonzero((xyz ** 2).sum(axis=0) <= support_px ** 2)
    zyx = np.ascontiguousarray(xyz[::-1, inside])
    Fa = sfft.rfftn(a.astype(np.float32))
    # allowed cyclic shifts: |s| <= max_shift per axis
    k = (np.arange(n) + n // 2) % n - n // 2          # index -> signed shift
    ok = np.abs(k) <= max_shift_px
    allowed_idx = np.flatnonzero((ok[:, None, None] & ok[None, :, None] & ok[None, None, :])
                                 .ravel())
    scores = np.empty((2, len(rotations)))
    shifts = np.empty((2, len(rotations), 3))
    rb = np.zeros((batch, n * n * n), dtype=np.float32)
    for start in range(0, len(rotations), batch):
        Rb = rotations[start:start + batch]
        m = len(Rb)
        sl = slice(start, start + m)
        # rotated b at output r: b(R^T r); in index order (z, y, x) the matrix is P R^T P
        Mz = Rb.transpose(0, 2, 1)[:, ::-1, ::-1]
        coords = (Mz @ zyx).transpose(1, 0, 2).reshape(3, -1) + c
        rb[:m, inside] = ndimage.map_coordinates(b, coords, order=1, mode='constant',
                                                 cval=0.0, prefilter=False).reshape(m, -1)
        Fb = sfft.rfftn(rb[:m].reshape(m, n, n, n), axes=(1, 2, 3))
        for hand, prod in ((0, Fa[None] * np.conj(Fb)), (1, Fa[None] * Fb)):
            cc = sfft.irfftn(prod, s=(n, n, n), axes=(1, 2, 3)).reshape(m, -1)[:, allowed_idx]
            best = np.argmax(cc, axis=1)
            scores[hand, sl] = cc[np.arange(m), best]
            iz, iy, ix = np.unravel_index(allowed_idx[best], (n, n, n))
            # cc(s) = sum_r a(r) rb(r - s): a matches rb translated by +s
            shifts[hand, sl] = np.stack([k[ix], k[iy], k[iz]], axis=1)
    return scores, shifts


def _peaks(scores, rotations, count, min_sep_deg):
    """Indices of the best `count` scores whose rotations are >= min_sep_deg apart."""
    order = np.argsort(scores)[::-1]
    chosen = []
    cos_sep = np.cos(np.deg2rad(min_sep_deg))
    for i in order:
        ok = True
        for j in chosen:
            tr = np.trace(rotations[i].T @ rotations[j])
            if (tr - 1.0) / 2.0 > cos_sep:
                ok = False
                break
        if ok:
            chosen.append(i)
            if len(chosen) == count:
                break
    return chosen


def _angle(R1, R2):
    return float(np.rad2deg(np.arccos(np.clip((np.trace(R1.T @ R2) - 1.0) / 2.0, -1, 1))))


def _masked_cc(a, b, m):
    a, b = a[m].astype(np.float64), b[m].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / den) if den > 0 else 0.0


def _refine(a, b, mask, R0, t0_px, rot_step_deg, shift_step_px, maxfev=600, xatol=0.03):
    """Local Nelder-Mead on (rotation vector applied on the left of R0 in degrees, shift
    in pixels), maximising the correlation of a and the transformed b inside the mask.
    Only the voxels inside the mask are interpolated. Returns (R, t_px, score)."""
    n = a.shape[0]
    c = np.full(3, n // 2, dtype=np.float64)
    idx = np.nonzero(mask > 0.5)
    pts = np.stack(idx).astype(np.float64) - c[:, None]        # (3, p) output index - c
    av = a[idx].astype(np.float64)
    av -= av.mean()
    av /= np.linalg.norm(av)

    def params_to_rt(x):
        return Rotation.from_rotvec(np.deg2rad(x[:3])).as_matrix() @ R0, t0_px + x[3:]

    def cost(x):
        R, t = params_to_rt(x)
        M = _rev(R.T)
        # same mapping as transform_map: input index = M (o - c - t) + c
        coords = M @ (pts - t[::-1, None]) + c[:, None]
        bv = ndimage.map_coordinates(b, coords, order=1, mode='constant', cval=0.0,
                                     prefilter=False)
        bv = bv - bv.mean()
        nb = np.linalg.norm(bv)
        return -(av @ bv) / nb if nb > 0 else 0.0

    x0 = np.zeros(6)
    simplex = np.vstack([x0] + [x0 + np.eye(6)[i] * (rot_step_deg if i < 3 else shift_step_px)
                                for i in range(6)])
    res = optimize.minimize(cost, x0, method='Nelder-Mead',
                            options=dict(initial_simplex=simplex, xatol=xatol, fatol=1e-7,
                                         maxiter=maxfev, maxfev=maxfev))
    R, t = params_to_rt(res.x)
    return R, t, -float(res.fun)


def align_volumes(vol_a, vol_b, pixel_size, check_hand=True, coarse_box=COARSE_BOX,
                  fine_box=FINE_BOX, n_rotations=N_ROTATIONS, n_candidates=N_CANDIDATES,
                  max_shift_frac=0.25, log=None):
    """Find the transform that best superimposes map B onto reference map A.

    Global search: n_rotations quasi-uniform rotations of B at coarse_box pixels, each with
    the best FFT translation (up to max_shift_frac of the box), for both hands in one pass
    (see _coarse_search); per hand the n_candidates best distinct peaks are refined locally
    (Nelder-Mead, 6 parameters) at the coarse box, then the best (and near-ties) at up to
    fine_box pixels. Score: correlation of A and the aligned B (cubic interpolation of the
    full map) inside a soft sphere of 0.45 box, both low-passed to the fine box. The hand
    with the higher score wins; check_hand=False keeps B's hand.
    Both maps must have the same box and pixel size. Returns a FrameTransform.
    """
    a = np.asarray(vol_a, dtype=np.float32)
    b = np.asarray(vol_b, dtype=np.float32)
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"Both maps must be cubic and of the same box, got {a.shape} and "
                         f"{b.shape}; resample one of them first.")
    say = log or (lambda msg: None)
    ac, px_c, mask_c = _prepare(a, pixel_size, coarse_box)
    af, px_f, mask_f = _prepare(a, pixel_size, fine_box)
    nc = ac.shape[0]
    rotations = uniform_rotation_grid(n_rotations)
    spacing = 2.0 * 11.0 * (4000.0 / n_rotations) ** (1.0 / 3.0)  # ~2 grid spacings
    bc = _prepare(b, pixel_size, coarse_box)[0]
    scores, shifts = _coarse_search(ac, bc, rotations, max_shift_frac * nc, 0.45 * nc + 1.5)
    say(f"coarse search: {len(rotations)} rotations x 2 hands at {nc} px "
        f"({px_c:.2f} A/px); best same hand {scores[0].max():.4f}, "
        f"mirror {scores[1].max():.4f}")
    Z = np.diag([-1.0, -1.0, 1.0])    # inversion = J Z
    results = []
    for mirrored in ([False, True] if check_hand else [False]):
        h = int(mirrored)
        # the hand flip is done on the map, so the local searches use mirrored=False on it
        bsrc = mirror_map(b) if mirrored else b
        bc_h = _prepare(bsrc, pixel_size, coarse_box)[0]
        bf = _prepare(bsrc, pixel_size, fine_box)[0]
        cands = []
        for i in _peaks(scores[h], rotations, n_candidates, spacing):
            R0 = rotations[i] @ Z if mirrored else rotations[i]
            cands.append(_refine(ac, bc_h, mask_c, R0, shifts[h, i], spacing / 4.0, 1.0,
                                 maxfev=300, xatol=0.1))
        cands.sort(key=lambda x: -x[2])
        # peaks that converged to the same solution are refined once
        distinct = []
        for cand in cands:
            if all(_angle(cand[0], d[0]) > 3.0 for d in distinct):
                distinct.append(cand)
        cands = distinct
        # near-ties at low resolution (pseudo-symmetry) are decided at the fine box
        scale = px_c / px_f
        fine = [_refine(af, bf, mask_f, R, t * scale, 2.0, 0.5)
                for R, t, s in cands if s >= cands[0][2] - 0.01][:3]
        fine.sort(key=lambda x: -x[2])
        R, t_f, s_f = fine[0]
        # reported score: cubic interpolation of the full map, then the fine-box filter
        found = FrameTransform(R, t_f * px_f, mirrored, 0.0, None, float(pixel_size))
        score = score_alignment(a, b, found, fine_box)
        say(f"{'mirrored' if mirrored else 'same'} hand: coarse {cands[0][2]:.4f} "
            f"({len(cands)} peaks refined), fine {s_f:.4f} ({len(fine)} refined), "
            f"final {score:.4f}")
        results.append((score, found))
    results.sort(key=lambda x: -x[0])
    score, found = results[0]
    found.score = score
    found.score_other_hand = results[1][0] if len(results) > 1 else None
    found.method = 'volumes'
    return found


def score_alignment(vol_a, vol_b, alignment, box=FINE_BOX):
    """Masked correlation of A and aligned B at up to `box` pixels (as align_volumes reports)."""
    aligned = alignment.apply_to_map(vol_b)
    a, _, mask = _prepare(vol_a, alignment.pixel_size, box)
    b = _prepare(aligned, alignment.pixel_size, box)[0]
    return _masked_cc(a, b, mask > 0.5)
