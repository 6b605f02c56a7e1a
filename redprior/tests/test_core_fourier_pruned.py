"""The pruned FFTs of core.fourier.pruned against numpy's full transforms."""
import unittest

import numpy as np

from redprior.core.fourier.pruned import (add_band_block, band_block, block_frequencies,
                                          centre_of_irfftn, rfftn_of_centre)


def _band_limited(rng, m, band):
    """A random rfftn-layout grid that is zero outside |k_i| <= band."""
    shape = (m, m, m // 2 + 1)
    ft = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    k = (np.arange(m) + m // 2) % m - m // 2
    keep = ((np.abs(k)[:, None, None] <= band) & (np.abs(k)[None, :, None] <= band)
            & (np.arange(m // 2 + 1)[None, None, :] <= band))
    return ft * keep


def _centre_of_full_irfftn(ft, n):
    m = ft.shape[0]
    big = np.fft.fftshift(np.fft.irfftn(ft, s=(m, m, m)))
    o = m // 2 - n // 2
    return big[o:o + n, o:o + n, o:o + n]


class TestPrunedTransforms(unittest.TestCase):
    # (padded grid, box, band): a narrow band, an odd grid, the whole grid
    CASES = [(32, 16, 5), (33, 16, 9), (32, 16, 16), (30, 15, 15)]

    def test_inverse_is_the_centre_of_the_full_inverse(self):
        rng = np.random.default_rng(1)
        for m, n, band in self.CASES:
            ft = _band_limited(rng, m, band)
            got = centre_of_irfftn(band_block(ft, band), m, n)
            want = _centre_of_full_irfftn(ft, n)
            self.assertEqual(got.shape, (n, n, n))
            self.assertEqual(got.dtype, np.float32)
            err = np.abs(got - want).max() / np.abs(want).max()
            self.assertLess(err, 1e-5, (m, n, band))

    def test_forward_is_the_band_of_the_full_transform(self):
        rng = np.random.default_rng(2)
        for m, n, band in self.CASES:
            vol = rng.standard_normal((n, n, n)).astype(np.float32)
            big = np.zeros((m, m, m))
            o = m // 2 - n // 2
            big[o:o + n, o:o + n, o:o + n] = vol
            want = np.fft.rfftn(np.fft.ifftshift(big))
            got = np.zeros((m, m, m // 2 + 1), dtype=np.complex64)
            add_band_block(got, rfftn_of_centre(vol, m, band))
            kept = band_block(want, band)
            err = np.abs(band_block(got, band) - kept).max() / np.abs(kept).max()
            self.assertLess(err, 1e-5, (m, n, band))
            # outside the band nothing was added
            self.assertEqual(np.abs(got).sum() - np.abs(band_block(got, band)).sum(), 0.0)

    def test_block_frequencies_are_those_of_the_block(self):
        k, kx = block_frequencies(32, 3)
        self.assertEqual(list(k), [0, 1, 2, 3, -3, -2, -1])
        self.assertEqual(list(kx), [0, 1, 2, 3])
        k, kx = block_frequencies(8, 20)  # a band wider than the grid is the whole grid
        self.assertEqual(list(k), [0, 1, 2, 3, -4, -3, -2, -1])
        self.assertEqual(len(kx), 5)


if __name__ == "__main__":
    unittest.main()
