"""Maps of a consensus: each refinement's map in the reference frame and their cross-FSC.

Pure numpy; no Scipion. The frame transforms come from core.validation.consensus_frames.
"""
import itertools

import numpy as np

from redprior.core.fourier.fsc import fsc as _fsc
from redprior.core.fourier.fsc import read_resolution
from redprior.core.geometry import masks
from redprior.core.io import mrc as mrcio

# masks for the cross-FSC (fsc_mask): none, a soft sphere, or from the reference map
MASKS = ('none', 'sphere', 'auto')


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


def fsc_mask(kind, reference, pixel_size):
    """The mask of MASKS `kind` for maps like `reference` (None for 'none'): a soft sphere of
    0.45 box, or the reference low-passed to 15 A, thresholded, dilated and softened."""
    box = reference.shape[0]
    if kind == 'none':
        return None
    if kind == 'sphere':
        return masks.spherical_mask(box, 0.45 * box, soft_px=3)
    if kind == 'auto':
        return masks.solvent_mask(reference, pixel_size, lowpass_A=max(15.0, 3 * pixel_size))
    raise ValueError(f"Unknown cross-FSC mask {kind!r}; choose from {list(MASKS)}.")


def aligned_maps(map_paths, transforms, pixel_size, out_paths=None):
    """The MRC maps map_paths[k] moved by the FrameTransforms transforms[k] into the
    reference frame (identities left as read), written to out_paths[k] when given."""
    maps = []
    for k, (path, t) in enumerate(zip(map_paths, transforms)):
        data = mrcio.read_map(path)[0]
        aligned = data if t.method == 'identity' else t.apply_to_map(data)
        if out_paths is not None:
            mrcio.write_map(out_paths[k], aligned, pixel_size)
        maps.append(aligned)
    return maps


def compare_maps(map_paths, transforms, pixel_size, mask='auto', names=None,
                 aligned_paths=None, mask_path=None):
    """cross_fsc of the aligned maps (aligned_maps) under fsc_mask(mask, first map).

    The aligned maps go to aligned_paths and the mask (if any) to mask_path when given.
    """
    maps = aligned_maps(map_paths, transforms, pixel_size, aligned_paths)
    weights = fsc_mask(mask, maps[0], pixel_size)
    if weights is not None and mask_path:
        mrcio.write_map(mask_path, weights, pixel_size)
    return cross_fsc(maps, pixel_size, weights, None if names is None else names[:len(maps)])


def grid_errors(maps, particle_pixels=None):
    """Why the inputs cannot be compared: maps [(box, pixel size A)] that differ from the
    first one (pixel sizes by more than 1 %), and particle sets whose pixel size
    (particle_pixels[k], one per map, or None) differs from their map's. [] when all fit."""
    errors = []
    if maps:
        box0, px0 = maps[0]
        for k, (box, px) in enumerate(maps[1:], start=2):
            if box != box0 or abs(px - px0) > 0.01 * px0:
                errors.append('Map %d is %d px at %.3f A/px but map 1 is %d px at %.3f '
                              'A/px: resample it to the first map (e.g. relion_image_'
                              'handler --rescale_angpix %.3f --new_box %d, or xmipp '
                              'crop/resize volumes).' % (k, box, px, box0, px0, px0, box0))
    for k, ((_, vpx), ppx) in enumerate(zip(maps, particle_pixels or []), start=1):
        if ppx and vpx and abs(ppx - vpx) > 0.01 * vpx:
            errors.append('Particle set %d is at %.3f A/px but its map is at %.3f '
                          'A/px: give the map of that refinement (or rescale one of '
                          'them).' % (k, ppx, vpx))
    return errors
