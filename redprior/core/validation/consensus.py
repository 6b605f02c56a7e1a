"""Consensus of refinements from several engines: pose sets and per-particle agreement.

Pure numpy; no Scipion. The rule follows the review (PAPER.md 3.7): estimate each parameter
with several algorithms; where the estimates agree keep (and may average) them, with three
or more estimates keep the majority cluster, and with only two that disagree discard the
particle.

Conventions (RELION 3.1, as core.geometry.rotations and core.geometry.align3d):
  * a pose set is particle ids, RELION pose matrices R (image = sum_z V(R^T r)) and
    origins o (rlnOriginX/YAngst, Angstrom);
  * each engine has its own map frame; consensus_frames.align_pose_sets /
    align3d.align_volumes give the FrameTransform that takes an engine's poses into the
    reference engine's frame (R_ref = mirror^h(R) @ G, o_ref = o + (R_ref t)_xy),
    `PoseSet.transformed` applies it;
  * angles are compared modulo the point group (angles.angular_distance: R ~ R S),
    shifts as the 2D distance of the origins in Angstrom.

Rule (`consensus`): two engines agree on a particle when the angle difference is
<= angle_tol AND the origin difference is <= shift_tol. A particle is kept ("agreeing") when
at least min_agree engines agree pairwise (a clique of the agreement graph); the default
min_agree is a strict majority, N // 2 + 1: both engines for N = 2 (the review's "two that
disagree: discard"), 2 of 3, 3 of 4 or 5. Only particles present in every set are judged.

The other parts of a consensus run: consensus_frames (one frame for all inputs),
consensus_maps (cross-FSC), consensus_results (files) and consensus_report (figures, HTML).
"""
import itertools
from dataclasses import dataclass

import numpy as np

from redprior.core.geometry import rotations as angles

DEFAULT_ANGLE_TOL = 10.0    # degrees
DEFAULT_SHIFT_TOL = 3.0     # Angstrom
PERCENTILES = (50, 75, 90, 95)

# ---------------------------------------------------------------------------------------
# Pose sets
# ---------------------------------------------------------------------------------------
@dataclass
class PoseSet:
    """Poses of one engine: ids (n,), rotations (n, 3, 3) RELION matrices, shifts_A (n, 2)."""
    ids: np.ndarray
    rotations: np.ndarray
    shifts_A: np.ndarray
    name: str = ''

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=np.int64).ravel()
        self.rotations = np.asarray(self.rotations, dtype=np.float64).reshape(-1, 3, 3)
        self.shifts_A = (np.zeros((len(self.ids), 2)) if self.shifts_A is None
                         else np.asarray(self.shifts_A, dtype=np.float64).reshape(-1, 2))
        if not len(self.ids) == len(self.rotations) == len(self.shifts_A):
            raise ValueError(f"Pose set {self.name!r}: {len(self.ids)} ids, "
                             f"{len(self.rotations)} rotations and {len(self.shifts_A)} "
                             "shifts; they must be equal.")
        if len(np.unique(self.ids)) != len(self.ids):
            raise ValueError(f"Pose set {self.name!r} has duplicated particle ids; each "
                             "particle must appear once.")

    def __len__(self):
        return len(self.ids)

    @classmethod
    def from_euler(cls, ids, rot, tilt, psi, shift_x_A=None, shift_y_A=None, name=''):
        shifts = None if shift_x_A is None else np.stack([shift_x_A, shift_y_A], axis=1)
        return cls(ids, angles.euler_to_matrix(rot, tilt, psi), shifts, name)

    def take(self, ids):
        """The poses of the given ids, in that order (all must be present)."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(self.ids)
        found = np.searchsorted(self.ids, ids, sorter=order)
        pos = order[np.minimum(found, len(order) - 1)] if len(order) else found
        if len(ids) and (not len(order) or not np.array_equal(self.ids[pos], ids)):
            raise KeyError(f"Pose set {self.name!r} lacks some of the requested ids.")
        return PoseSet(self.ids[pos], self.rotations[pos], self.shifts_A[pos], self.name)

    def transformed(self, transform):
        """Poses in the reference frame given by a FrameTransform (align3d convention)."""
        R, o = transform.apply_to_poses(self.rotations, self.shifts_A)
        return PoseSet(self.ids, R, o, self.name)

    def save(self, path):
        np.savez(path, ids=self.ids, rotations=self.rotations, shifts_A=self.shifts_A,
                 name=np.array(self.name))

    @classmethod
    def load(cls, path):
        with np.load(path) as d:
            return cls(d['ids'], d['rotations'], d['shifts_A'], str(d['name']))


def common_ids(sets):
    """Sorted ids present in every set."""
    ids = sets[0].ids
    for s in sets[1:]:
        ids = np.intersect1d(ids, s.ids)
    return np.sort(ids)


# ---------------------------------------------------------------------------------------
# Per-particle agreement
# ---------------------------------------------------------------------------------------
def pairwise_differences(sets, symmetry='C1', ids=None):
    """Angle (deg, symmetry-aware) and origin (A) differences of every pair of engines.

    sets must be in one frame already. Returns dict(ids, pairs [(i, j)], angle (P, n),
    shift (P, n), operator (P, n): index of the symmetry operator S with R_i ~ R_j S).
    """
    ids = common_ids(sets) if ids is None else np.asarray(ids, dtype=np.int64)
    taken = [s.take(ids) for s in sets]
    pairs = list(itertools.combinations(range(len(sets)), 2))
    ang = np.zeros((len(pairs), len(ids)))
    sh = np.zeros((len(pairs), len(ids)))
    op = np.zeros((len(pairs), len(ids)), dtype=np.int64)
    for p, (i, j) in enumerate(pairs):
        if len(ids):
            ang[p], op[p] = angles.angular_distance(taken[i].rotations, taken[j].rotations,
                                                    symmetry, return_operator=True)
            sh[p] = np.linalg.norm(taken[i].shifts_A - taken[j].shifts_A, axis=1)
    return dict(ids=ids, pairs=pairs, angle=ang, shift=sh, operator=op)


@dataclass
class ConsensusResult:
    ids: np.ndarray            # common particle ids (n,)
    names: list                # engine names
    pairs: list                # [(i, j)]
    angle: np.ndarray          # (P, n) degrees
    shift: np.ndarray          # (P, n) Angstrom
    pair_agree: np.ndarray     # (P, n) bool
    group: np.ndarray          # (n, N) bool: engines in the largest agreeing clique
    agree: np.ndarray          # (n,) bool: kept by the rule
    min_agree: int
    angle_tol: float
    shift_tol: float
    symmetry: str
    not_common: dict           # engine name -> number of its particles not in every set
    consensus_rotations: np.ndarray = None   # (n, 3, 3) mean pose of the group
    consensus_shifts_A: np.ndarray = None    # (n, 2)

    @property
    def agreeing_ids(self):
        return self.ids[self.agree]

    @property
    def disagreeing_ids(self):
        return self.ids[~self.agree]

    def summary(self, percentiles=PERCENTILES):
        """JSON-able summary: counts, fractions and per-pair / per-engine statistics."""
        n = len(self.ids)
        out = dict(engines=list(self.names), symmetry=self.symmetry,
                   angle_tol_deg=self.angle_tol, shift_tol_A=self.shift_tol,
                   min_agree=self.min_agree, n_common=n, n_agree=int(self.agree.sum()),
                   n_disagree=int(n - self.agree.sum()),
                   fraction_agree=float(self.agree.mean()) if n else None,
                   not_common=dict(self.not_common), pairs=[], engines_in_majority={})
        for p, (i, j) in enumerate(self.pairs):
            out['pairs'].append(dict(
                pair=[int(i), int(j)], names=[self.names[i], self.names[j]],
                angle=angles.error_percentiles(self.angle[p], percentiles),
                shift=angles.error_percentiles(self.shift[p], percentiles),
                fraction_agree=float(self.pair_agree[p].mean()) if n else None))
        for k, name in enumerate(self.names):
            # how often each engine is part of the majority among the kept particles
            kept = self.group[self.agree]
            out['engines_in_majority'][name] = float(kept[:, k].mean()) if len(kept) else None
        return out


def _largest_cliques(pair_agree, pairs, n_engines, angle):
    """For each particle, the largest set of engines that agree pairwise (ties: the one with
    the smallest mean angle difference). Returns (n, N) bool."""
    n = pair_agree.shape[1]
    pair_index = {pq: k for k, pq in enumerate(pairs)}
    best = np.zeros((n, n_engines), dtype=bool)
    best_size = np.zeros(n, dtype=int)
    best_cost = np.full(n, np.inf)
    best[:, 0] = True                     # a single engine always "agrees with itself"
    best_size[:] = 1
    for size in range(2, n_engines + 1):
        for members in itertools.combinations(range(n_engines), size):
            ks = [pair_index[pq] for pq in itertools.combinations(members, 2)]
            ok = pair_agree[ks].all(axis=0)
            cost = angle[ks].mean(axis=0)
            better = ok & ((size > best_size) | ((size == best_size) & (cost < best_cost)))
            if better.any():
                best[better] = False
                best[np.ix_(better, members)] = True
                best_size[better] = size
                best_cost[better] = cost[better]
    return best


def _mean_poses(taken, group, ops, operator, pairs):
    """Chordal mean of each particle's group poses (symmetry copies aligned to the group's
    first engine) and the mean origin."""
    n, N = group.shape
    pair_index = {pq: k for k, pq in enumerate(pairs)}
    R_mean = np.zeros((n, 3, 3))
    o_mean = np.zeros((n, 2))
    first = np.argmax(group, axis=1)
    count = group.sum(axis=1)
    for k in range(N):
        sel = group[:, k]
        if not sel.any():
            continue
        Rk = taken[k].rotations.copy()
        for f in range(N):
            m = sel & (first == f) & (f != k)
            if m.any():
                # R_f ~ R_k S with S = ops[operator of pair (f, k)]: use R_k S
                Rk[m] = Rk[m] @ ops[operator[pair_index[(f, k)]][m]]
        R_mean[sel] += Rk[sel]
        o_mean[sel] += taken[k].shifts_A[sel]
    R_mean = np.array([angles.project_to_rotation(M) for M in R_mean])
    return R_mean, o_mean / np.maximum(count, 1)[:, None]


def consensus(sets, angle_tol=DEFAULT_ANGLE_TOL, shift_tol=DEFAULT_SHIFT_TOL,
              symmetry='C1', min_agree=None):
    """Agreeing / disagreeing particles of N >= 2 pose sets already in one frame.

    See the module docstring for the rule. shift_tol None or <= 0 ignores shifts.
    """
    if len(sets) < 2:
        raise ValueError("A consensus needs at least two pose sets.")
    N = len(sets)
    min_agree = N // 2 + 1 if min_agree is None else int(min_agree)
    if not 2 <= min_agree <= N:
        raise ValueError(f"min_agree must be between 2 and the number of sets ({N}), got "
                         f"{min_agree}.")
    names = [s.name or f'set {k + 1}' for k, s in enumerate(sets)]
    if len(set(names)) != len(names):
        names = [f'{k + 1}: {nm}' for k, nm in enumerate(names)]
    diffs = pairwise_differences(sets, symmetry)
    ids = diffs['ids']
    if len(ids) == 0:
        raise ValueError("The particle sets have no particle id in common, so no particle can be "
                         "compared: give refinements of the same particles (e.g. the outputs "
                         "of refinements started from one particle set).")
    pair_agree = diffs['angle'] <= angle_tol
    if shift_tol is not None and shift_tol > 0:
        pair_agree &= diffs['shift'] <= shift_tol
    group = _largest_cliques(pair_agree, diffs['pairs'], N, diffs['angle'])
    agree = group.sum(axis=1) >= min_agree
    taken = [s.take(ids) for s in sets]
    R_mean, o_mean = _mean_poses(taken, group, angles.symmetry_operators(symmetry),
                                 diffs['operator'], diffs['pairs'])
    not_common = {nm: int((~np.isin(s.ids, ids)).sum()) for nm, s in zip(names, sets)}
    return ConsensusResult(ids, names, diffs['pairs'], diffs['angle'], diffs['shift'],
                           pair_agree, group, agree, min_agree, float(angle_tol),
                           float(shift_tol or 0.0), str(symmetry), not_common, R_mean, o_mean)
