"""Tiled network inference: the denoiser's memory stays flat as the box grows.

Why: a 3D U-Net keeps several full-resolution activations alive at once (the shipped model:
8 channels at the top, 16 after the skip concatenation, float32), so one untiled pass needs
memory proportional to the box cubed: gigabytes at box 192 and tens of gigabytes at the
384-600 px boxes at which users of RELION 5's Blush (the same kind of network in the same
place) report out-of-memory crashes. Here the (already normalised, network-grid) map is cut
into overlapping cubes of one fixed size, the network runs on each and the outputs are
blended, so the peak memory is that of one tile (plus the map itself) whatever the box.

Blending: each tile's output is weighted by a separable ramp across the overlap with its
neighbours: 0 over a margin at the face (where the network's zero padding makes its output
least like that of the untiled pass), a raised cosine, then 1. Faces on the edge of the
volume keep full weight. The 1D weights are divided by their sum per axis, so the weights of
every voxel sum to 1 (exactly where one tile covers it, to float rounding elsewhere). With
tile starts on the model's pooling grid (tile, overlap and box multiples of its `multiple`)
the network sees every tile as it sees that part of the whole map, up to its receptive field.

The settings are read in one place, settings(): arguments, else the environment variables
REDPRIOR_TILE / REDPRIOR_TILE_OVERLAP, else the defaults below (REDPRIOR_TILE=0: never tile).
Lower REDPRIOR_TILE (e.g. 64) where memory is short; the cost is time and a larger seam error.
"""
import os

import numpy as np

# Measured with the shipped model on 2 busy cores (one pass; peak RSS of the process):
# box 128 untiled 1.9 s / 2.2 GB, tile 96 3.2 s / 1.0 GB; box 192 untiled 16.6 s / 6.3 GB,
# tile 128 7.3 s / 1.9 GB, tile 96 9.7 s / 1.1 GB, tile 64 13.4 s / 0.9 GB (tiled vs untiled:
# correlation 0.99998 / 0.9999 / 0.9998, RMS difference 0.5 / 1.2 / 1.7 % of the denoiser's
# change for tiles of 128 / 96 / 64). 128 leaves boxes up to 128 untiled (bit-identical to
# before), is the fastest tiled choice and bounds a pass at ~2 GB (the worker's two concurrent
# passes at box 192: 3.2 GB). Overlap 32 halves the seam error at up to twice the tiles (tile
# 96, box 256: 64 tiles instead of 27, 36 s instead of 16 s).
DEFAULT_TILE = 128     # voxels: the largest tile (fit_tile may use a smaller one)
DEFAULT_OVERLAP = 16   # voxels shared by neighbouring tiles (the blend zone)
ENV_TILE = "REDPRIOR_TILE"
ENV_OVERLAP = "REDPRIOR_TILE_OVERLAP"


def _env_int(name):
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of voxels, got '{value}'.") from None


def settings(tile=None, overlap=None, multiple=1):
    """(tile, overlap) in voxels: tile 0 means never tile.

    tile / overlap: given values win, then REDPRIOR_TILE / REDPRIOR_TILE_OVERLAP, then
    DEFAULT_TILE / DEFAULT_OVERLAP. The tile is rounded down to a multiple of `multiple` (the
    network's inputs must divide by it), at least one multiple; the overlap must be at most
    half the tile (each tile then has a part no neighbour blends into).
    """
    tile = tile if tile is not None else _env_int(ENV_TILE)
    tile = DEFAULT_TILE if tile is None else int(tile)
    overlap = overlap if overlap is not None else _env_int(ENV_OVERLAP)
    overlap = DEFAULT_OVERLAP if overlap is None else int(overlap)
    if tile < 0 or overlap < 0:
        raise ValueError(f"Tile size and overlap must be >= 0 voxels, got {tile} and {overlap}.")
    if tile == 0:
        return 0, overlap
    multiple = max(int(multiple), 1)
    tile = max(tile // multiple * multiple, multiple)
    if 2 * overlap > tile:
        raise ValueError(f"The tile overlap ({overlap} voxels) must be at most half the tile "
                         f"({tile} voxels): lower {ENV_OVERLAP} or raise {ENV_TILE}.")
    return tile, overlap


def fit_tile(n, tile, overlap, multiple=1):
    """The tile actually used for n voxels: `tile` is the largest allowed (the memory bound);
    the smallest multiple of `multiple` that covers n with as few tiles per axis is used, so a
    box just above the tile size is not run as 2^3 nearly whole boxes (box 144, tile 128:
    8 tiles of 80, not of 128)."""
    if n <= tile:
        return tile
    per_axis = -(-(n - overlap) // (tile - overlap))
    t = max(-(-(n + (per_axis - 1) * overlap) // per_axis), 2 * overlap, 1)
    return min(-(-t // multiple) * multiple, tile)


def starts(n, tile, overlap):
    """First voxel of each tile along an axis of n voxels (the last tile ends at n)."""
    if n <= tile:
        return [0]
    step = tile - overlap
    out = list(range(0, n - tile, step))
    return out + [n - tile]


def ramp(overlap, margin=None):
    """Weights rising from 0 to 1 across `overlap` voxels, with ramp(i) + ramp(-1 - i) = 1.

    0 over the first `margin` voxels (default overlap // 4), a raised cosine, 1 over the last
    `margin`: a neighbour's mirrored ramp completes it to 1.
    """
    margin = overlap // 4 if margin is None else margin
    width = overlap - 2 * margin
    if overlap <= 0:
        return np.ones(0)
    if width <= 0:
        raise ValueError(f"A ramp of {overlap} voxels cannot keep a margin of {margin}.")
    r = np.clip((np.arange(overlap) + 0.5 - margin) / width, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * r)


def axis_weights(n, tile, overlap, margin=None):
    """Per tile start, its 1D weights along an axis, normalised so that they sum to 1."""
    first = starts(n, tile, overlap)
    up = ramp(overlap, margin)
    weights = []
    for s in first:
        w = np.ones(min(tile, n))
        if overlap and s > 0:
            w[:overlap] *= up
        if overlap and s + tile < n:
            w[-overlap:] *= up[::-1]
        weights.append(w)
    total = np.zeros(n)
    for s, w in zip(first, weights):
        total[s:s + w.size] += w
    return [(s, w / total[s:s + w.size]) for s, w in zip(first, weights)]


def apply_tiled(network, vol, tile, overlap, multiple=1, batch=1, margin=None):
    """network applied to a cubic map in overlapping tiles and blended (see the module doc).

    network: maps a float32 array (b, t, t, t) to one of the same shape (a batch of tiles).
    tile: the largest tile (fit_tile picks the one used, a multiple of `multiple`). A map no
    larger than one tile goes through in one piece, unchanged. batch: tiles per network call
    (memory grows with it).
    """
    n = vol.shape[0]
    if vol.shape != (n, n, n):
        raise ValueError(f"Tiled inference needs a cubic map, got {vol.shape}.")
    x = np.asarray(vol, dtype=np.float32)
    if not tile or n <= tile:
        return np.asarray(network(x[None]))[0]
    tile = fit_tile(n, tile, overlap, multiple)
    per_axis = axis_weights(n, tile, overlap, margin)
    corners = [(a, b, c) for a in per_axis for b in per_axis for c in per_axis]
    out = np.zeros((n, n, n), np.float32)
    for i in range(0, len(corners), max(int(batch), 1)):
        group = corners[i:i + max(int(batch), 1)]
        tiles = np.stack([x[a:a + tile, b:b + tile, c:c + tile]
                          for (a, _), (b, _), (c, _) in group])
        y = np.asarray(network(tiles))
        for k, ((a, wa), (b, wb), (c, wc)) in enumerate(group):
            w = (wa[:, None, None] * wb[None, :, None] * wc[None, None, :]).astype(np.float32)
            out[a:a + tile, b:b + tile, c:c + tile] += w * y[k]
    return out
