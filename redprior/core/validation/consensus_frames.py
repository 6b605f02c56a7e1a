"""One frame for every refinement of a consensus: the frame transform of each input.

Pure numpy; no Scipion. Each engine refines in its own map frame; the transform that takes
input k into the frame of input 1 comes from the maps (core.geometry.align3d.align_volumes:
rotation, shift and hand) or, without maps, from the particle poses (`align_pose_sets`).
Conventions as core.geometry.align3d: a FrameTransform takes an engine's poses into the
reference engine's frame (R_ref = mirror^h(R) @ G, o_ref = o + (R_ref t)_xy).
"""
import numpy as np

from redprior.core.geometry import align3d
from redprior.core.geometry import rotations as angles
from redprior.core.geometry.align3d import FrameTransform
from redprior.core.io import mrc as mrcio
from redprior.core.validation.consensus import DEFAULT_ANGLE_TOL, PoseSet, common_ids

FROM_MAPS, FROM_POSES = 'maps', 'poses'


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


def describe(d):
    """One line for the log: a FrameTransform.to_dict() of an aligned input."""
    return (f'{d["method"]}, rotation {d["rotation_angle_deg"]:.2f} deg, shift '
            f'({", ".join("%.2f" % x for x in d["shift_A"])}) A, hand {d["hand"]}, '
            f'score {d["score"]:.3f}'
            + ('' if d['score_other_hand'] is None
               else f' (other hand {d["score_other_hand"]:.3f})'))


def align_frames(n, pixel_size, method=None, map_paths=(), pose_paths=(), symmetry='C1',
                 angle_tol=DEFAULT_ANGLE_TOL, check_hand=True, log=print):
    """FrameTransform.to_dict() of each of n inputs: how it goes into input 1's frame.

    method None: no alignment (all identity); FROM_MAPS: align_volumes of the MRC map
    map_paths[k] onto map_paths[0]; FROM_POSES: align_pose_sets of the PoseSet files
    pose_paths[k] (PoseSet.save) onto pose_paths[0]. The first input is always the identity.
    """
    identity = FrameTransform(pixel_size=pixel_size, method='identity')
    transforms = [identity.to_dict()]
    for k in range(1, n):
        if not method:
            t = identity
        elif method == FROM_MAPS:
            a = mrcio.read_map(map_paths[0])[0]
            b = mrcio.read_map(map_paths[k])[0]
            log(f'Aligning map {k + 1} onto map 1 ...')
            t = align3d.align_volumes(a, b, pixel_size, check_hand=check_hand, log=log)
        elif method == FROM_POSES:
            t = align_pose_sets(PoseSet.load(pose_paths[0]), PoseSet.load(pose_paths[k]),
                                symmetry, angle_tol, check_hand)
            t.pixel_size = pixel_size
        else:
            raise ValueError(f"Unknown frame alignment {method!r}; choose None, "
                             f"{FROM_MAPS!r} or {FROM_POSES!r}.")
        d = t.to_dict()
        log(f'Frame of input {k + 1}: {describe(d)}')
        transforms.append(d)
    return transforms
