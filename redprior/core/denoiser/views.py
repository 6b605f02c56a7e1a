"""The frame in which each half-map is denoised.

With one deterministic network both halves are denoised in the same frame, so whatever the
network adds that depends on the grid's orientation (a 3D U-Net is not rotation-equivariant)
is the same in both references; particles aligned to those references can carry that shared
feature into both half-maps and inflate their FSC. HALF_VIEWS_ROTATED denoises half 2 turned
by a quarter turn about z (and turns the result back), so those orientation-dependent parts
differ between the halves while the map itself is unchanged: a quarter turn about the box
centre maps voxels onto voxels (no interpolation) and keeps the hand. Measured
(benchmarks/bench_half_views.py, README "Benchmarks"): it cuts what the two denoised halves
share beyond the truth, but in whole refinements the half-map over-claim stays, so the
default is one frame.
"""
import numpy as np

HALF_VIEWS_SAME, HALF_VIEWS_ROTATED = "same", "rotated"
HALF_VIEWS = (HALF_VIEWS_SAME, HALF_VIEWS_ROTATED)
HALF_VIEWS_DEFAULT = HALF_VIEWS_SAME  # the hook's, the refine form's and the benchmarks'


def _reverse_about_centre(vol, axis):
    """Index i -> (N - i) mod N along axis: the reflection that keeps voxel N // 2 (RELION's
    map centre) in place. np.flip alone maps i -> N - 1 - i, which moves it for even N."""
    return np.roll(np.flip(vol, axis), 1, axis)


def quarter_turn(vol):
    """vol (z, y, x) turned by +90 degrees about z, about voxel (N//2, N//2, N//2): a swap of
    y and x followed by a reflection, so a proper rotation (the hand is kept)."""
    return _reverse_about_centre(np.swapaxes(vol, 1, 2), 2)


def quarter_turn_back(vol):
    """The inverse of quarter_turn."""
    return np.swapaxes(_reverse_about_centre(vol, 2), 1, 2)


def denoise_in_view(denoise, x_tilde, half, views=HALF_VIEWS_SAME):
    """denoise(x_tilde) in the frame of this half: half 2 turned when views is 'rotated'
    (half 1 and the joined final call in the map's own frame). Returns what denoise returns,
    its map turned back."""
    if views not in HALF_VIEWS:
        raise ValueError(f"half views {views!r}: use one of {', '.join(HALF_VIEWS)}")
    if views == HALF_VIEWS_SAME or half != 2:
        return denoise(x_tilde)
    denoised, where = denoise(np.ascontiguousarray(quarter_turn(x_tilde)))
    return np.ascontiguousarray(quarter_turn_back(denoised)), where
