"""The reserved-structure guard for maps whose atomic model is unknown (a copied demo map).

A map carries no sequence, so it is compared by content: each reserved structure whose model
is installed is turned into a potential map on the same grid and aligned onto the map
(core.geometry.align3d, both hands); a correlation above MAP_MATCH_CC after alignment means
the map is that structure. Unrelated proteins of similar size stay well below it at the
resolution compared (align3d's 40-px fine box).
"""
import numpy as np

from redprior.core.geometry.align3d import align_volumes
from redprior.core.simulation import structure

from .reserved import RESERVED, _reserved_file

MAP_MATCH_CC = 0.8


def reserved_map_match(vol, pixel_size, specs=RESERVED):
    """(entry, correlation) of the reserved structure the map is, or None.

    Reserved models that are not installed, or that do not fit the map's box, are skipped
    (a map that small or that large cannot be them at this pixel size)."""
    vol = np.asarray(vol, dtype=np.float32)
    box = vol.shape[0]
    best = None
    for spec in specs:
        path = _reserved_file(spec)
        if path is None:
            continue
        try:
            ref = structure.potential_map(path, box, pixel_size)
        except ValueError:  # does not fit this box
            continue
        cc = float(align_volumes(ref, vol, pixel_size).score)
        if cc >= MAP_MATCH_CC and (best is None or cc > best[1]):
            best = (spec.entry, cc)
    return best


def check_map_not_reserved(vol, pixel_size, label="map"):
    """ValueError naming the structure when the map is a reserved one."""
    found = reserved_map_match(vol, pixel_size)
    if found:
        raise ValueError(f"{label} is the reserved structure {found[0]} (correlation "
                         f"{found[1]:.2f} after alignment): it is kept for evaluation and must "
                         "not be used for training. Use maps of other structures.")
