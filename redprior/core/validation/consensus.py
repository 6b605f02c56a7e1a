"""Consensus of refinements from several engines: per-particle pose agreement and cross-FSC.

Pure numpy (+ matplotlib for the report figures); no Scipion. The rule follows the review
(PAPER.md 3.7): estimate each parameter with several algorithms; where the estimates agree
keep (and may average) them, with three or more estimates keep the majority cluster, and
with only two that disagree discard the particle.

Conventions (RELION 3.1, as core.geometry.rotations and core.geometry.align3d):
  * a pose set is particle ids, RELION pose matrices R (image = sum_z V(R^T r)) and
    origins o (rlnOriginX/YAngst, Angstrom);
  * each engine has its own map frame; `align_pose_sets` / align3d.align_volumes give the
    FrameTransform that takes an engine's poses into the reference engine's frame
    (R_ref = mirror^h(R) @ G, o_ref = o + (R_ref t)_xy), `PoseSet.transformed` applies it;
  * angles are compared modulo the point group (angles.angular_distance: R ~ R S),
    shifts as the 2D distance of the origins in Angstrom.

Rule (`consensus`): two engines agree on a particle when the angle difference is
<= angle_tol AND the origin difference is <= shift_tol. A particle is kept ("agreeing") when
at least min_agree engines agree pairwise (a clique of the agreement graph); the default
min_agree is a strict majority, N // 2 + 1: both engines for N = 2 (the review's "two that
disagree: discard"), 2 of 3, 3 of 4 or 5. Only particles present in every set are judged.
"""
import itertools
import json
import os
from dataclasses import dataclass

import numpy as np

from redprior.core.geometry import rotations as angles
from redprior.core.geometry.align3d import FrameTransform
from redprior.core.fourier.fsc import fsc as _fsc
from redprior.core.fourier.fsc import read_resolution

DEFAULT_ANGLE_TOL = 10.0    # degrees
DEFAULT_SHIFT_TOL = 3.0     # Angstrom
PERCENTILES = (50, 75, 90, 95)
RESULT_JSON = 'consensus.json'
RESULT_NPZ = 'consensus_particles.npz'


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
# Frame alignment from poses (when no maps are given)
# ---------------------------------------------------------------------------------------
def align_pose_sets(ref, other, symmetry='C1', angle_tol=DEFAULT_ANGLE_TOL, check_hand=True):
    """FrameTransform taking `other`'s poses into `ref`'s frame, from the common particles.

    The rotation is angles.align_rotation_sets (robust, symmetry-aware) for each hand; the
    hand with the smaller median angle difference wins. The 3D translation t solves
    o_ref - o_other = (R' t)_xy (R' = transformed poses) by least squares over the
    particles that agree in angle, trimmed once at 3 median absolute residuals.
    score = fraction of common particles within angle_tol after the transform.
    """
    ids = common_ids([ref, other])
    if len(ids) < 3:
        raise ValueError(f"Aligning frames from poses needs >= 3 common particles; "
                         f"{ref.name!r} and {other.name!r} share {len(ids)}.")
    a, b = ref.take(ids), other.take(ids)
    fits = []
    for mirrored in ([False, True] if check_hand else [False]):
        Rb = angles.mirror(b.rotations) if mirrored else b.rotations
        G = angles.align_rotation_sets(a.rotations, Rb, symmetry)
        d = angles.angular_distance(a.rotations, Rb @ G, symmetry)
        fits.append((float(np.median(d)), float(np.mean(d <= angle_tol)), G, mirrored, d))
    fits.sort(key=lambda f: f[0])
    _, score, G, mirrored, d = fits[0]
    other_score = fits[1][1] if len(fits) > 1 else None
    transform = FrameTransform(G.T, np.zeros(3), mirrored, score, other_score, 1.0, 'poses')
    R_t, o_t = transform.apply_to_poses(b.rotations, b.shifts_A)
    use = d <= max(angle_tol, np.median(d))
    t = np.zeros(3)
    for _ in range(2):
        if use.sum() < 2:
            break
        A = R_t[use, :2, :].reshape(-1, 3)           # (2m, 3): rows of R' for x and y
        y = (a.shifts_A[use] - o_t[use]).reshape(-1)
        t = np.linalg.lstsq(A, y, rcond=None)[0]
        res = np.linalg.norm(a.shifts_A - o_t - (R_t @ t)[:, :2], axis=1)
        mad = np.median(res[use])
        use = use & (res <= max(3.0 * mad, 1e-6))
    transform.shift_A = t
    return transform


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


# ---------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------
def cross_fsc(maps, pixel_size, mask=None, names=None):
    """FSC of every pair of maps (already in one frame), optionally multiplied by a mask.

    Returns dict(names, freq (1/A per shell), curves {(i, j): curve}, res05 and res0143
    (N, N) resolution matrices in A with NaN on the diagonal, crossed05 / crossed0143 (N, N)
    bool: False where the curve never fell below the threshold (then the value is Nyquist).
    """
    maps = [np.asarray(m, dtype=np.float64) for m in maps]
    N = len(maps)
    shapes = {m.shape for m in maps}
    if len(shapes) != 1:
        raise ValueError(f"Cross-FSC needs maps of one box, got shapes {sorted(shapes)}.")
    if mask is not None:
        maps = [m * mask for m in maps]
    box = maps[0].shape[0]
    names = list(names) if names else [f'map {k + 1}' for k in range(N)]
    freq = np.arange(box // 2 + 1) / (box * float(pixel_size))
    curves = {}
    res = {t: np.full((N, N), np.nan) for t in (0.5, 0.143)}
    crossed = {t: np.ones((N, N), dtype=bool) for t in (0.5, 0.143)}
    for i, j in itertools.combinations(range(N), 2):
        c = _fsc(maps[i], maps[j])
        curves[(i, j)] = c
        for t in (0.5, 0.143):
            r = read_resolution(c, box, pixel_size, t)
            res[t][i, j] = res[t][j, i] = r.bound_A
            crossed[t][i, j] = crossed[t][j, i] = r.crossed
    return dict(names=names, freq=freq, curves=curves, res05=res[0.5], res0143=res[0.143],
                crossed05=crossed[0.5], crossed0143=crossed[0.143])


# ---------------------------------------------------------------------------------------
# Results on disk
# ---------------------------------------------------------------------------------------
def _nan_to_none(a):
    return [[None if not np.isfinite(x) else float(x) for x in row] for row in np.asarray(a)]


def save_result(folder, result, transforms=None, fsc_result=None, extra=None):
    """Write consensus.json (summary, frame transforms, cross-FSC) and
    consensus_particles.npz (per-particle arrays). Returns the JSON path."""
    os.makedirs(folder, exist_ok=True)
    data = dict(summary=result.summary() if result is not None else None)
    if transforms is not None:
        data['transforms'] = [t.to_dict() if t is not None else None for t in transforms]
    if fsc_result is not None:
        data['fsc'] = dict(names=fsc_result['names'], freq=fsc_result['freq'].tolist(),
                           curves=[dict(pair=[int(i), int(j)], fsc=c.tolist())
                                   for (i, j), c in fsc_result['curves'].items()],
                           res05=_nan_to_none(fsc_result['res05']),
                           res0143=_nan_to_none(fsc_result['res0143']),
                           crossed05=fsc_result['crossed05'].tolist(),
                           crossed0143=fsc_result['crossed0143'].tolist())
    if extra:
        data.update(extra)
    path = os.path.join(folder, RESULT_JSON)
    with open(path + '.tmp', 'w') as fh:
        json.dump(data, fh, indent=1)
    os.replace(path + '.tmp', path)
    if result is not None:
        np.savez(os.path.join(folder, RESULT_NPZ), ids=result.ids,
                 pairs=np.array(result.pairs, dtype=np.int64).reshape(-1, 2),
                 angle=result.angle, shift=result.shift, pair_agree=result.pair_agree,
                 group=result.group, agree=result.agree,
                 consensus_rotations=result.consensus_rotations,
                 consensus_shifts_A=result.consensus_shifts_A,
                 names=np.array(result.names))
    return path


def load_result(folder):
    """(json dict, npz dict or None) as written by save_result."""
    with open(os.path.join(folder, RESULT_JSON)) as fh:
        data = json.load(fh)
    npz = os.path.join(folder, RESULT_NPZ)
    arrays = None
    if os.path.exists(npz):
        with np.load(npz) as d:
            arrays = {k: d[k] for k in d.files}
    return data, arrays


# ---------------------------------------------------------------------------------------
# Figures and report (matplotlib only; work headless)
# ---------------------------------------------------------------------------------------
def plot_cross_fsc_matrix(ax, data, threshold='0.5'):
    """Heat map of the pairwise map resolution (A) at FSC = threshold ('0.5' or '0.143')."""
    fsc_data = data.get('fsc')
    if not fsc_data:
        ax.text(0.5, 0.5, 'no maps compared', ha='center', va='center')
        ax.axis('off')
        return None
    key = 'res05' if threshold == '0.5' else 'res0143'
    M = np.array([[np.nan if x is None else x for x in row] for row in fsc_data[key]])
    names = fsc_data['names']
    im = ax.imshow(M, cmap='viridis_r', interpolation='nearest')
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha='right', fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    crossed = fsc_data.get('crossed05' if threshold == '0.5' else 'crossed0143')
    for i in range(len(names)):
        for j in range(len(names)):
            text = '-' if not np.isfinite(M[i, j]) else '%.1f' % M[i, j]
            if crossed is not None and np.isfinite(M[i, j]) and not crossed[i][j]:
                text += '*'
            ax.text(j, i, text, ha='center', va='center', color='w', fontsize=9)
    ax.set_title('Cross-FSC resolution at %s (A)' % threshold)
    if crossed is not None and not np.all(crossed):
        ax.set_xlabel('* never below %s: Nyquist' % threshold, fontsize=8)
    return im


def plot_fsc_curves(ax, data):
    fsc_data = data.get('fsc')
    if not fsc_data:
        ax.text(0.5, 0.5, 'no maps compared', ha='center', va='center')
        ax.axis('off')
        return
    freq = np.array(fsc_data['freq'])
    names = fsc_data['names']
    for c in fsc_data['curves']:
        i, j = c['pair']
        ax.plot(freq[1:], np.array(c['fsc'])[1:], label='%s / %s' % (names[i], names[j]))
    for t in (0.5, 0.143):
        ax.axhline(t, color='k', ls=':', lw=0.8)
    ax.set_xlabel('resolution (1/A)')
    ax.set_ylabel('FSC')
    ax.set_ylim(-0.1, 1.05)
    ax.legend(fontsize=7)
    ax.set_title('Cross-FSC of the aligned maps')


def _hist(ax, values_by_pair, labels, tol, xlabel, title):
    if not values_by_pair or all(len(v) == 0 for v in values_by_pair):
        ax.text(0.5, 0.5, 'no common particles', ha='center', va='center')
        ax.axis('off')
        return
    top = max(float(np.max(v)) for v in values_by_pair if len(v))
    bins = np.linspace(0.0, max(top, 2.0 * tol if tol else 1.0) * 1.02, 40)
    for v, lab in zip(values_by_pair, labels):
        ax.hist(v, bins=bins, histtype='step', lw=1.5, label=lab)
    if tol:
        ax.axvline(tol, color='r', ls='--', lw=1, label='tolerance %g' % tol)
    ax.set_xlabel(xlabel)
    ax.set_ylabel('particles')
    ax.set_yscale('log')
    ax.legend(fontsize=7)
    ax.set_title(title)


def _pair_labels(data, arrays):
    names = [str(x) for x in arrays['names']]
    return ['%s / %s' % (names[i], names[j]) for i, j in arrays['pairs']]


def plot_angle_hist(ax, data, arrays):
    s = data.get('summary') or {}
    if arrays is None:
        _hist(ax, [], [], 0, '', '')
        return
    _hist(ax, list(arrays['angle']), _pair_labels(data, arrays), s.get('angle_tol_deg'),
          'angle difference (deg, %s)' % s.get('symmetry', 'C1'), 'Angular differences')


def plot_shift_hist(ax, data, arrays):
    s = data.get('summary') or {}
    if arrays is None:
        _hist(ax, [], [], 0, '', '')
        return
    _hist(ax, list(arrays['shift']), _pair_labels(data, arrays), s.get('shift_tol_A'),
          'origin difference (A)', 'Shift differences')


FIGURES = (('cross_fsc', 'Cross-FSC resolution matrix'), ('fsc_curves', 'Cross-FSC curves'),
           ('angles', 'Angular differences'), ('shifts', 'Shift differences'))


def draw_figure(fig, name, data, arrays):
    """Draw one of FIGURES into an (empty) matplotlib figure."""
    ax = fig.add_subplot(111)
    if name == 'cross_fsc':
        im = plot_cross_fsc_matrix(ax, data)
        if im is not None:
            fig.colorbar(im, ax=ax, label='A')
    elif name == 'fsc_curves':
        plot_fsc_curves(ax, data)
    elif name == 'angles':
        plot_angle_hist(ax, data, arrays)
    elif name == 'shifts':
        plot_shift_hist(ax, data, arrays)
    else:
        raise ValueError(f"Unknown figure {name!r}; choose from {[f for f, _ in FIGURES]}.")
    fig.tight_layout()
    return fig


def save_figures(folder, data=None, arrays=None, dpi=100):
    """Write the FIGURES as <name>.png into folder (from the saved result when data is None)."""
    from matplotlib.figure import Figure
    if data is None:
        data, arrays = load_result(folder)
    paths = []
    for name, _ in FIGURES:
        fig = Figure(figsize=(6.5, 4.5))
        draw_figure(fig, name, data, arrays)
        path = os.path.join(folder, name + '.png')
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def write_report(folder, title='Consensus of refinements'):
    """consensus.html next to consensus.json, with the figures; returns its path."""
    import html
    data, arrays = load_result(folder)
    save_figures(folder, data, arrays)
    s = data.get('summary')
    rows = []
    if s:
        frac = s['fraction_agree']
        rows += [('engines', ', '.join(s['engines'])), ('symmetry', s['symmetry']),
                 ('tolerances', '%g deg, %g A' % (s['angle_tol_deg'], s['shift_tol_A'])),
                 ('rule', 'at least %d of %d engines agree' % (s['min_agree'],
                                                              len(s['engines']))),
                 ('common particles', str(s['n_common'])),
                 ('agreeing', '%d (%.1f %%)' % (s['n_agree'], 100 * frac if frac is not None
                                                else 0.0)),
                 ('disagreeing', str(s['n_disagree']))]
        for p in s['pairs']:
            a, sh = p['angle'], p['shift']
            if a['n']:
                rows.append(('%s / %s' % tuple(p['names']),
                             'angle median %.2f, p90 %.2f deg; shift median %.2f, p90 %.2f A; '
                             'agree %.1f %%' % (a['p50'], a['p90'], sh['p50'], sh['p90'],
                                                100 * p['fraction_agree'])))
    f = data.get('fsc')
    for c in (f or {}).get('curves', []):
        i, j = c['pair']
        rows.append(('cross-FSC %s / %s' % (f['names'][i], f['names'][j]),
                     '%.2f A at 0.5%s, %.2f A at 0.143%s' % (
                         f['res05'][i][j], '' if f['crossed05'][i][j] else ' (Nyquist)',
                         f['res0143'][i][j], '' if f['crossed0143'][i][j] else ' (Nyquist)')))
    for k, t in enumerate(data.get('transforms') or []):
        if t:
            rows.append(('frame of input %d' % (k + 1),
                         '%s: rotation %.2f deg, shift (%s) A, hand %s, score %.3f' % (
                             t['method'], t['rotation_angle_deg'],
                             ', '.join('%.2f' % x for x in t['shift_A']), t['hand'],
                             t['score'])))
    table = '\n'.join('<tr><th>%s</th><td>%s</td></tr>' % (html.escape(k), html.escape(v))
                      for k, v in rows)
    figs = '\n'.join('<h2>%s</h2><img src="%s.png" alt="%s">' % (label, name, label)
                     for name, label in FIGURES)
    text = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>%s</title>'
            '<style>body{font-family:sans-serif} th{text-align:left;padding-right:1em}'
            '</style></head><body><h1>%s</h1><table>%s</table>%s</body></html>'
            % (html.escape(title), html.escape(title), table, figs))
    path = os.path.join(folder, 'consensus.html')
    with open(path, 'w') as fh:
        fh.write(text)
    return path
