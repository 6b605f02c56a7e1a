"""Rotation distances, point-group symmetry and handedness for particle poses (pure numpy).

Conventions (RELION 3.1, the same as core.simulation.particles):
  * a pose is the matrix A = euler_to_matrix(rot, tilt, psi) that rotates map coordinates
    into the image frame: image(x, y) = sum_z V(A^T (x, y, z));
  * a symmetry operator S leaves the map unchanged, V(S r) = V(r), so the poses A and A S
    give the same image: equivalent poses are multiplied by operators on the RIGHT;
  * the operator sets are RELION's (`relion_refine --sym X --print_symmetry_ops`): Cn about
    z, Dn adds a 2-fold about x, T/O/I (I = I2, and I1..I4) use RELION's axes.

All functions take stacks of matrices (n, 3, 3) (or one (3, 3)) and are vectorised.
"""
import re

import numpy as np

from redprior.core.geometry.euler import euler_to_matrix, matrix_to_euler

__all__ = ['euler_to_matrix', 'matrix_to_euler', 'rotation_angle', 'axis_angle_matrix',
           'symmetry_operators', 'symmetry_order', 'angular_distance', 'mirror',
           'mirror_euler', 'project_to_rotation', 'align_rotation_sets',
           'compare_rotation_sets', 'error_percentiles', 'DEFAULT_PERCENTILES']

DEFAULT_PERCENTILES = (50, 75, 90, 95)

# Hand flip: mirror through the xy plane. Any other mirror is this one times a rotation,
# which a global frame alignment absorbs.
_J = np.diag([1.0, 1.0, -1.0])


def _stack(R):
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"Rotation matrices must be (..., 3, 3), got shape {R.shape}.")
    return R.reshape(-1, 3, 3)


def _angle_from_trace(tr):
    # clip: rounding pushes the cosine slightly outside [-1, 1] for (near) identical poses
    return np.rad2deg(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def rotation_angle(R):
    """Rotation angle (degrees, 0..180) of each matrix of a stack."""
    R = _stack(R)
    return _angle_from_trace(np.trace(R, axis1=1, axis2=2))


def axis_angle_matrix(axis, angle_deg):
    """Active rotations by angle_deg about axis (Rodrigues); axis (3,) or (n, 3)."""
    axis = np.atleast_2d(np.asarray(axis, dtype=np.float64))
    axis = axis / np.linalg.norm(axis, axis=1, keepdims=True)
    t = np.deg2rad(np.atleast_1d(np.asarray(angle_deg, dtype=np.float64)))
    axis, t = np.broadcast_arrays(axis, t[:, None])
    t = t[:, 0]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    K = np.zeros((len(t), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -z, y, -x
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = z, -y, x
    s, c = np.sin(t)[:, None, None], np.cos(t)[:, None, None]
    return np.eye(3) + s * K + (1.0 - c) * (K @ K)


# ---------------------------------------------------------------------------------------
# Point groups
# ---------------------------------------------------------------------------------------
_Z = (0.0, 0.0, 1.0)
# Generating axes (fold, axis) of RELION's symmetries.cpp, checked against
# `relion_refine --print_symmetry_ops` (3.1.3) in the tests.
_GENERATORS = {
    'T': [(3, _Z), (2, (0.0, np.sqrt(2.0 / 3.0), np.sqrt(1.0 / 3.0)))],
    'O': [(3, (1.0, 1.0, 1.0)), (4, _Z)],
    'I1': [(2, (1.0, 0.0, 0.0)), (5, (0.85065080702670, 0.0, -0.5257311142635)),
           (3, (0.9341723640, 0.3568220765, 0.0))],
    'I2': [(2, _Z), (5, (0.525731114, 0.0, 0.850650807)),
           (3, (0.0, 0.356822076, 0.934172364))],
    'I3': [(2, (-0.5257311143, 0.0, 0.8506508070)), (5, _Z),
           (3, (-0.4911234411, 0.3568220765, 0.7946544723))],
    'I4': [(2, (0.5257311143, 0.0, 0.8506508070)), (5, (0.8944271932, 0.0, 0.4472135909)),
           (3, (0.4911234411, 0.3568220765, 0.7946544723))],
}
_ORDERS = {'T': 12, 'O': 24, 'I': 60}


def _parse_symmetry(sym):
    s = str(sym or 'C1').strip().upper()
    m = re.fullmatch(r'([CD])(\d+)', s)
    if m:
        n = int(m.group(2))
        if n < 1 or (m.group(1) == 'D' and n < 2):
            raise ValueError(f"Symmetry {sym!r}: the order must be >= 1 (C) or >= 2 (D).")
        return m.group(1), n
    if s in ('T', 'O', 'I', 'I1', 'I2', 'I3', 'I4'):
        return ('I2' if s == 'I' else s), None
    raise ValueError(
        f"Symmetry {sym!r} is not supported: use Cn, Dn, T, O, I (= I2) or I1-I4 as in RELION. "
        "Groups with mirrors (Cs, Ci, Cnv, Cnh, Sn) cannot relate two poses of a chiral "
        "molecule; use the rotation subgroup (e.g. Cn for Cnv).")


def _close_group(generators, expected, tol=1e-4):
    """All products of the generators (breadth first) until no new matrix appears."""
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for A in frontier:
            for g in generators:
                P = A @ g
                if not any(np.abs(P - Q).max() < tol for Q in group):
                    group.append(P)
                    new.append(P)
        frontier = new
        if len(group) > expected:
            raise RuntimeError(f"Symmetry group generation gave more than {expected} "
                               "operators: the generator axes are inconsistent.")
    return np.array(group)


def symmetry_operators(sym='C1'):
    """(k, 3, 3) rotation matrices of a point group in RELION's orientation; [0] is identity.

    Cn: n-fold about z. Dn: Cn plus a 2-fold about x. T (12), O (24), I = I2 (60) and I1..I4
    with the axes RELION uses, so the set equals relion_refine --print_symmetry_ops.
    """
    kind, n = _parse_symmetry(sym)
    if kind == 'C':
        return axis_angle_matrix(_Z, 360.0 * np.arange(n) / n)
    if kind == 'D':
        cn = axis_angle_matrix(_Z, 360.0 * np.arange(n) / n)
        flip = axis_angle_matrix((1.0, 0.0, 0.0), 180.0)[0]
        return np.concatenate([cn, cn @ flip])
    gens = [axis_angle_matrix(axis, 360.0 / fold)[0] for fold, axis in _GENERATORS[kind]]
    return _close_group(gens, _ORDERS[kind[0]])


def symmetry_order(sym='C1'):
    """Number of operators of the group."""
    kind, n = _parse_symmetry(sym)
    if kind == 'C':
        return n
    if kind == 'D':
        return 2 * n
    return _ORDERS[kind[0]]


# ---------------------------------------------------------------------------------------
# Distances
# ---------------------------------------------------------------------------------------
def _best_operator(M, ops):
    """For relative rotations M (n,3,3) = R1^T R2, the trace of M S for the best S of ops."""
    # tr(M S) = sum_ij M_ij S_ji
    traces = np.einsum('nij,kji->nk', M, ops)
    best = np.argmax(traces, axis=1)
    return traces[np.arange(len(M)), best], best


def angular_distance(R1, R2, symmetry='C1', return_operator=False):
    """Axis-angle distance (degrees) between pose stacks, minimised over the symmetry group.

    d = min_S arccos((tr(R1^T R2 S) - 1) / 2): the angle of the rotation that takes pose R1
    to the closest symmetry-equivalent copy of pose R2. R1 and R2 broadcast ((n,3,3) with
    (1,3,3) or (3,3)). With return_operator=True also returns the index of the best operator
    in symmetry_operators(symmetry).
    """
    R1, R2 = _stack(R1), _stack(R2)
    if len(R1) != len(R2):
        if len(R1) == 1:
            R1 = np.broadcast_to(R1, R2.shape)
        elif len(R2) == 1:
            R2 = np.broadcast_to(R2, R1.shape)
        else:
            raise ValueError(f"Pose stacks differ in length: {len(R1)} and {len(R2)}.")
    M = np.einsum('nji,njk->nik', R1, R2)  # R1^T R2
    ops = symmetry_operators(symmetry)
    tr, best = _best_operator(M, ops)
    d = _angle_from_trace(tr)
    return (d, best) if return_operator else d


def mirror(R):
    """Poses of the mirror-image (other hand) map: J R J with J = diag(1, 1, -1).

    If V'(r) = V(J r), the images of V' at pose J R J equal those of V at pose R (the image
    z flip does not change a projection). In Euler angles: (rot, tilt, psi) ->
    (-rot, -tilt, -psi), see mirror_euler.
    """
    R = _stack(R)
    return _J @ R @ _J


def mirror_euler(rot, tilt, psi):
    """Euler angles of mirror(euler_to_matrix(rot, tilt, psi)), tilt kept in [0, 180]."""
    return matrix_to_euler(mirror(euler_to_matrix(rot, tilt, psi)))


def project_to_rotation(M):
    """Closest rotation (Frobenius norm) to a 3x3 matrix: U diag(1, 1, det) V^T."""
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    return U @ D @ Vt


# ---------------------------------------------------------------------------------------
# Global frame alignment
# ---------------------------------------------------------------------------------------
def align_rotation_sets(R_ref, R_other, symmetry='C1', iterations=30, n_candidates=32,
                        max_score_particles=2000, max_fit_particles=5000, seed=0):
    """Global rotation G with R_ref[i] ~ R_other[i] @ G for most particles.

    Right multiplication is what a rotated map frame does: if the other refinement's map is
    the reference map rotated, V_other(r) = V_ref(Q r), every pose obeys
    R_ref = R_other Q^T, so G = Q^T. (G @ R_other would instead rotate the image frame,
    which no refinement does.)

    Robust: G is first chosen among relative rotations of a few particles (the candidate with
    the smallest median distance, so a minority of wrong poses cannot steer it), then refined
    as the chordal L1 mean (Weiszfeld iterations on the projected Euclidean mean) of the
    per-particle estimates R_other^T R_ref S, each with its best symmetry operator S.
    One global rotation needs few particles: at most max_fit_particles (a random subset) are
    used, so large sets stay fast.
    """
    R_ref, R_other = _stack(R_ref), _stack(R_other)
    if len(R_ref) != len(R_other) or len(R_ref) == 0:
        raise ValueError(f"Need two non-empty pose stacks of equal length, got {len(R_ref)} "
                         f"and {len(R_other)}.")
    ops = symmetry_operators(symmetry)
    rel = np.einsum('nji,njk->nik', R_other, R_ref)  # R_other^T R_ref = G S_i^T

    rng = np.random.default_rng(seed)
    n = len(rel)
    score_idx = (np.arange(n) if n <= max_score_particles
                 else rng.choice(n, max_score_particles, replace=False))
    cand_idx = (np.arange(n) if n <= n_candidates
                else rng.choice(n, n_candidates, replace=False))

    def distances(G, idx):
        # distance of each particle's relative rotation to G S (best S)
        M = np.einsum('ji,njk->nik', G, rel[idx])  # G^T rel
        tr, best = _best_operator(M, ops)
        return _angle_from_trace(tr), best

    best_G, best_score = None, np.inf
    for c in cand_idx:
        score = np.median(distances(rel[c], score_idx)[0])
        if score < best_score:
            best_G, best_score = rel[c], score

    fit_idx = (np.arange(n) if n <= max_fit_particles
               else rng.choice(n, max_fit_particles, replace=False))
    G = best_G
    for _ in range(iterations):
        _, best = distances(G, fit_idx)
        # the best S maximises tr(G^T rel S), i.e. rel ~ G S^T: the particle's estimate of
        # G is rel S
        est = np.einsum('nij,njk->nik', rel[fit_idx], ops[best])
        chord = np.linalg.norm((est - G).reshape(len(fit_idx), -1), axis=1)
        w = 1.0 / np.maximum(chord, 1e-6)
        G_new = project_to_rotation(np.einsum('n,nij->ij', w, est))
        if rotation_angle(G.T @ G_new)[0] < 1e-6:
            G = G_new
            break
        G = G_new
    return G


def compare_rotation_sets(R_ref, R_other, symmetry='C1', align=False, check_hand=True,
                          percentiles=DEFAULT_PERCENTILES):
    """Per-particle angular differences between two pose sets, with the frame and hand.

    align=False compares the poses as they are (same map frame, e.g. a refinement started
    from the ground truth low-passed). align=True first applies align_rotation_sets.
    check_hand aligns R_other and its mirror (align_rotation_sets both times) and says which
    hand fits: a refinement of the mirror-image map only fits after mirror().

    Returns a dict: errors (deg, per particle, after alignment if align), percentiles,
    G (3x3 list, identity if not aligned), and with check_hand: hand ('same' or 'mirror'),
    median_same / median_mirror (deg, after alignment) and their ratio.
    """
    R_ref, R_other = _stack(R_ref), _stack(R_other)
    G = align_rotation_sets(R_ref, R_other, symmetry) if align else np.eye(3)
    errors = angular_distance(R_ref, R_other @ G, symmetry)
    out = dict(errors=errors, percentiles=error_percentiles(errors, percentiles),
               G=G.tolist(), G_angle=float(rotation_angle(G)[0]), aligned=bool(align),
               symmetry=str(symmetry))
    if check_hand and len(R_ref) >= 3:
        G_same = G if align else align_rotation_sets(R_ref, R_other, symmetry)
        same = float(np.median(angular_distance(R_ref, R_other @ G_same, symmetry)))
        R_mir = mirror(R_other)
        G_mir = align_rotation_sets(R_ref, R_mir, symmetry)
        mir = float(np.median(angular_distance(R_ref, R_mir @ G_mir, symmetry)))
        out.update(hand='same' if same <= mir else 'mirror', median_same=same,
                   median_mirror=mir, G_mirror=G_mir.tolist())
    return out


def error_percentiles(errors, percentiles=DEFAULT_PERCENTILES):
    """{'p50': .., 'p75': .., ..., 'mean', 'rms', 'max', 'n'} of a 1D error array (NaN-free).

    Empty input gives n = 0 and None values, so callers can report "no particles".
    """
    e = np.asarray(errors, dtype=np.float64).ravel()
    e = e[np.isfinite(e)]
    out = {'n': int(e.size)}
    for p in percentiles:
        out['p%g' % p] = float(np.percentile(e, p)) if e.size else None
    out['mean'] = float(e.mean()) if e.size else None
    out['rms'] = float(np.sqrt((e ** 2).mean())) if e.size else None
    out['max'] = float(e.max()) if e.size else None
    return out


def dominant_relative_rotation(R_ref, R_other, min_angle=30.0, tol=10.0, max_candidates=200,
                               seed=0):
    """The rotation S that relates many far-off poses (R_other ~ R_ref S), or None.

    Among the particles whose poses differ by more than min_angle (deg), the relative
    rotations S_i = R_ref_i^T R_other_i are clustered: the S with the most others within
    tol degrees wins. Returns dict(matrix, angle, axis, count) for that cluster. A large
    cluster means a near-symmetry of the map (e.g. a dimer's pseudo two-fold): those particles
    are refined in the orientation related by it.
    """
    R_ref, R_other = _stack(R_ref), _stack(R_other)
    S = np.einsum('nji,njk->nik', R_ref, R_other)  # R_ref^T R_other
    far = np.nonzero(rotation_angle(S) > min_angle)[0]
    if len(far) == 0:
        return None
    rng = np.random.default_rng(seed)
    cand = far if len(far) <= max_candidates else rng.choice(far, max_candidates, False)
    best, best_count = None, 0
    for c in cand:
        count = int(np.sum(rotation_angle(np.einsum('ji,njk->nik', S[c], S[far])) <= tol))
        if count > best_count:
            best, best_count = c, count
    M = S[best]
    angle = float(rotation_angle(M))
    w = np.array([M[2, 1] - M[1, 2], M[0, 2] - M[2, 0], M[1, 0] - M[0, 1]])
    if np.linalg.norm(w) < 1e-6 or angle > 179.0:  # ~180 deg: the axis is the eigenvector of 1
        vals, vecs = np.linalg.eigh(0.5 * (M + M.T))
        w = vecs[:, np.argmax(vals)]
    axis = w / max(np.linalg.norm(w), 1e-12)
    return dict(matrix=M, angle=angle, axis=axis.tolist(), count=best_count)
