"""RELION intermediates as training pairs (Kimanius et al. 2021, the main training set).

Simulated particles are refined by RELION with `redprior_exrecon --record`, which saves
every unregularised map x~ = B/K (itNNN_halfH_unreg.mrc) with its FSC (itNNN_halfH_fsc.json).
This module turns such records into pairs: the FSC RELION gave (or, without gold-standard
halves, the equivalent half-map FSC against the ground truth), a selection by resolution,
and the fit of RELION's intensity scale. Pure numpy.
"""
import glob
import json
import os
import time

import numpy as np

from redprior.core.fourier.fsc import fsc as fsc_curve_of
from redprior.core.fourier.fsc import read_resolution
from redprior.core.training_data.pairs import FSC_THRESHOLD, Pair, fsc_filtered_target


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



def equivalent_half_fsc(x, gt):
    """FSC a half-map of x's quality would show: FSC(x, gt)^2 (per shell, clipped to [0, 1]).

    For x = gt + noise with spectral SNR s, FSC(x, gt) = sqrt(s / (1 + s)) and two such
    independent halves have FSC s / (1 + s): the Wiener weight of x itself, i.e. the target
    filter appendix A asks for. Used when RELION gives no gold-standard FSC (no split halves).
    """
    return np.clip(fsc_curve_of(np.asarray(x, np.float64), np.asarray(gt, np.float64)),
                   0.0, 1.0) ** 2


def recorded_maps(folders, gt, pixel_size, split_halves=True):
    """[(x, info)] of every map recorded in `folders` (record_files order), info as its
    fsc.json. split_halves: the refinement had gold-standard halves; then the final joined
    map (_half0_) is left out (the half-map FSC does not describe it), and a record without
    a usable FSC (none above FSC_THRESHOLD beyond the origin) gets, as every record of a
    refinement without halves, the equivalent_half_fsc against gt and its resolution.
    """
    from redprior.core.io.mrc import read_map

    out = []
    for m, j in [f for folder in folders for f in record_files(folder)]:
        if split_halves and "_half0_" in os.path.basename(m):
            continue  # the final joined map: the half-map FSC does not describe it
        info = _load_fsc_json(j)
        x, _ = read_map(m)
        fsc = np.asarray(info.get("fsc") or [0.0], dtype=np.float64)
        if not split_halves or not np.any(fsc[1:] > FSC_THRESHOLD):
            # no gold-standard FSC from RELION (no halves): the equivalent from the truth
            fsc = equivalent_half_fsc(x, gt)
            info = dict(info, fsc=fsc.tolist(),
                        resolution=read_resolution(fsc, x.shape[0], pixel_size,
                                                   FSC_THRESHOLD).bound_A)
        out.append((x, info))
    return out


def select_records(records, low, high, count=0):
    """(kept, outside): the records whose resolution is in [low, high] A, at most `count`
    of them (0: all) evenly spaced over the refinement(s); outside: how many were not in
    the range."""
    inside = [(x, i) for x, i in records
              if i.get("resolution") is not None and low <= i["resolution"] <= high]
    outside = len(records) - len(inside)
    if count and len(inside) > count:  # evenly spaced over the refinement(s)
        inside = [inside[int(i)] for i in np.linspace(0, len(inside) - 1, count).round()]
    return inside, outside


def recorded_pairs(folders, gt, pixel_size, low, high, count=0, split_halves=True):
    """(pairs, recorded, outside) of the --record folders of one structure's refinement(s):
    a generator of the pairs (pair_from_record) of the maps select_records keeps, the
    number of maps recorded (recorded_maps) and of those outside [low, high] A."""
    records = recorded_maps(folders, gt, pixel_size, split_halves)
    kept, outside = select_records(records, low, high, count)
    pairs = (pair_from_record(x, info, gt, pixel_size) for x, info in kept)
    return pairs, len(records), outside
