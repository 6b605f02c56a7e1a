"""Pose errors of a refinement against the true poses: angular (symmetry-aware) and origin
errors, a near-symmetric subset (e.g. a dimer's pseudo two-fold) and the origins' bias and
quantisation. Poses are RELION matrices (core.geometry.rotations' conventions).
"""
import numpy as np

from redprior.core.geometry import rotations as angles

PSEUDO_SYMMETRY_MIN_FRACTION = 0.03  # a cluster of far-off particles this big is reported
PSEUDO_SYMMETRY_MIN_ERROR = 30.0     # deg: particles beyond this are "far off"


def pseudo_symmetry(R_true, R_est, errors):
    """A near-symmetric subset: far-off particles all related to the truth by one rotation.

    Returns dict(fraction, count, angle, axis, text) when at least
    PSEUDO_SYMMETRY_MIN_FRACTION of the particles share one relating rotation, else None.
    """
    errors = np.asarray(errors, dtype=float)
    n = len(errors)
    if n == 0:
        return None
    found = angles.dominant_relative_rotation(R_true, R_est, PSEUDO_SYMMETRY_MIN_ERROR)
    if found is None or found['count'] < max(3, PSEUDO_SYMMETRY_MIN_FRACTION * n):
        return None
    frac = found['count'] / float(n)
    ax = found['axis']
    text = ('%.0f %% of the particles (%d) are refined in an orientation related to the truth '
            'by one %.0f° rotation about (%.2f, %.2f, %.2f): a near-symmetry of the map (e.g. '
            'the pseudo two-fold of a dimer), not random misalignment. Their angular errors '
            'are large by construction; the map is still consistent if the two related views '
            'look alike.' % (100 * frac, found['count'], found['angle'], ax[0], ax[1], ax[2]))
    return dict(fraction=frac, count=int(found['count']), angle=found['angle'], axis=ax,
                text=text)


def pose_errors(R_true, R_est, symmetry='C1', shifts_true_A=None, shifts_est_A=None,
                align=False, check_hand=True, percentiles=angles.DEFAULT_PERCENTILES, ids=None):
    """Per-particle angular (deg, symmetry-aware) and shift (A) errors against true poses.

    R_true, R_est: (n, 3, 3) RELION pose matrices of the same particles in the same order.
    shifts_*_A: (n, 2) rlnOriginX/YAngst. align: first bring R_est into the frame of R_true
    (angles.align_rotation_sets), for refinements that did not start from the true frame.
    """
    cmp = angles.compare_rotation_sets(R_true, R_est, symmetry, align=align,
                                       check_hand=check_hand, percentiles=percentiles)
    out = dict(n=int(len(cmp['errors'])), symmetry=str(symmetry), aligned=cmp['aligned'],
               G=cmp['G'], G_angle=cmp['G_angle'],
               angular_errors=cmp['errors'], angular=cmp['percentiles'])
    if ids is not None:
        out['ids'] = np.asarray(ids)
    if 'hand' in cmp:
        out.update(hand=cmp['hand'], median_same_hand=cmp['median_same'],
                   median_mirror_hand=cmp['median_mirror'])
    out['pseudo_symmetry'] = pseudo_symmetry(R_true, R_est @ np.asarray(cmp['G']),
                                             cmp['errors'])
    if shifts_true_A is not None and shifts_est_A is not None:
        d = np.asarray(shifts_est_A, dtype=float) - np.asarray(shifts_true_A, dtype=float)
        err = np.hypot(d[:, 0], d[:, 1])
        out.update(shift_errors=err, shift=angles.error_percentiles(err, percentiles),
                   shift_bias=shift_bias(d, shifts_est_A))
    return out


def shift_bias(d, shifts_est_A):
    """Mean origin error (x, y) in A, and whether the refined origins sit on a coarse grid.

    A systematic offset (a half-pixel or origin convention mismatch) shows as a mean error
    far from 0. Few distinct refined values per axis mean the origins are quantised by the
    refinement's translational grid (RELION's offset step in its last iterations): errors
    below about half that step cannot be measured, whatever the convention."""
    d = np.asarray(d, dtype=float)
    est = np.asarray(shifts_est_A, dtype=float)
    mean = d.mean(axis=0) if len(d) else np.zeros(2)
    levels = [np.unique(np.round(est[:, k], 3)) for k in range(2)] if len(est) else [[], []]
    out = dict(mean_A=[float(mean[0]), float(mean[1])],
               distinct_values=[int(len(levels[0])), int(len(levels[1]))])
    text = 'mean origin error (%.2f, %.2f) Å' % (mean[0], mean[1])
    if len(d) >= 20 and max(out['distinct_values']) <= 4:
        steps = [float(np.min(np.diff(lv))) for lv in levels if len(lv) > 1]
        out['grid_step_A'] = min(steps) if steps else None
        text += ('; the refined origins take only %d / %d distinct values (x / y)%s: they are '
                 'quantised by the refinement\'s translational grid, so shift errors below '
                 'about half a step are not measurable (not an origin convention error)'
                 % (out['distinct_values'][0], out['distinct_values'][1],
                    ', %.2f Å apart' % out['grid_step_A'] if out['grid_step_A'] else ''))
    out['text'] = text
    return out
