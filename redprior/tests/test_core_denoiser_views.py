"""The frame each half-map is denoised in (core.denoiser.views).

The quarter turn is checked on single voxels (where a point goes, that four turns are the
identity, that the hand is kept); denoise_in_view with numpy stand-ins for the network: one
that depends on the grid's orientation (a shift along x) and one that does not.
"""
import unittest

import numpy as np
from scipy import ndimage

from redprior.core.denoiser.views import (HALF_VIEWS_ROTATED, HALF_VIEWS_SAME, denoise_in_view,
                                          quarter_turn, quarter_turn_back)

N = 8
C = N // 2


def point(z, y, x):
    """A map with one voxel at (z, y, x) relative to the box centre."""
    v = np.zeros((N, N, N))
    v[C + z, C + y, C + x] = 1.0
    return v


def where(v):
    return tuple(int(i) for i in np.argwhere(v)[0] - C)


def shift_along_x(x):
    """A 'denoiser' that depends on the grid's orientation: moves the map by one voxel in x."""
    return np.roll(x, 1, axis=2), "test"


def smooth(x):
    """A 'denoiser' that does not (an isotropic Gaussian)."""
    return ndimage.gaussian_filter(x, 1.0, mode="wrap"), "test"


class TestQuarterTurn(unittest.TestCase):
    def test_turn_moves_points_as_a_rotation_about_z(self):
        # (z, y, x) -> (z, x, -y): +90 degrees about z, about the box centre
        self.assertEqual(where(quarter_turn(point(1, 2, 3))), (1, 3, -2))
        self.assertEqual(where(quarter_turn(point(0, 0, 0))), (0, 0, 0))
        self.assertEqual(where(quarter_turn_back(point(1, 3, -2))), (1, 2, 3))

    def test_four_turns_and_turn_back_are_the_identity(self):
        v = np.random.default_rng(1).standard_normal((N, N, N))
        w = v
        for _ in range(4):
            w = quarter_turn(w)
        np.testing.assert_array_equal(w, v)
        np.testing.assert_array_equal(quarter_turn_back(quarter_turn(v)), v)

    def test_hand_is_kept(self):
        # three points on the axes: their images still form a right-handed frame (det +1),
        # which a reflection (a mirror-image protein) would not
        ex, ey, ez = (np.array(where(quarter_turn(point(*p))))[::-1]  # as (x, y, z)
                      for p in ((0, 0, 1), (0, 1, 0), (1, 0, 0)))
        self.assertEqual(round(float(np.linalg.det(np.stack([ex, ey, ez])))), 1)


class TestDenoiseInView(unittest.TestCase):
    def test_rotated_turns_only_half_2(self):
        v = point(0, 0, 0)
        for half in (0, 1):  # the joined final call and half 1: the map's own frame
            out, _ = denoise_in_view(shift_along_x, v, half, HALF_VIEWS_ROTATED)
            self.assertEqual(where(out), (0, 0, 1))
        out, tag = denoise_in_view(shift_along_x, v, 2, HALF_VIEWS_ROTATED)
        # shifted along x in the turned frame is shifted along -y in the map's frame
        self.assertEqual(where(out), (0, -1, 0))
        self.assertEqual(tag, "test")
        out, _ = denoise_in_view(shift_along_x, v, 2, HALF_VIEWS_SAME)
        self.assertEqual(where(out), (0, 0, 1))

    def test_an_orientation_free_denoiser_gives_the_same_map(self):
        v = np.random.default_rng(2).standard_normal((N, N, N))
        same, _ = denoise_in_view(smooth, v, 2, HALF_VIEWS_SAME)
        turned, _ = denoise_in_view(smooth, v, 2, HALF_VIEWS_ROTATED)
        np.testing.assert_allclose(turned, same, atol=1e-12)

    def test_unknown_view_is_refused(self):
        with self.assertRaisesRegex(ValueError, "use one of same, rotated"):
            denoise_in_view(smooth, point(0, 0, 0), 2, "mirrored")
