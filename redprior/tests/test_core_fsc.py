"""One resolution per curve: the FSC read-out rule and everything that reports it."""
import unittest

import numpy as np

from redprior.core.fourier.fsc import fsc, read_resolution
from redprior.core.prior import schedule
from redprior.core.validation import metrics


class TestReadResolution(unittest.TestCase):
    def test_last_shell_before_the_first_drop(self):
        curve = np.array([1, 0.99, 0.9, 0.5, 0.2, 0.1, 0.3, 0.05])
        r = read_resolution(curve, 14, 2.0, 0.143)
        self.assertEqual((r.shell, r.crossed), (4, True))
        self.assertAlmostEqual(r.angstrom, 14 * 2.0 / 4)
        self.assertEqual(r.text, '7.00 Å')
        # 0.5 is reached at shell 3 (0.5 is not below 0.5)
        self.assertAlmostEqual(read_resolution(curve, 14, 2.0, 0.5).angstrom, 14 * 2.0 / 3)

    def test_never_crosses_is_said_and_bounded_by_nyquist(self):
        r = read_resolution(np.ones(8), 14, 2.0)
        self.assertFalse(r.crossed)
        self.assertIsNone(r.angstrom)
        self.assertEqual(r.bound_A, 4.0)
        self.assertEqual(r.text, 'better than Nyquist (4.00 Å): never crosses 0.143')

    def test_below_from_the_first_shell(self):
        r = read_resolution(np.array([1, 0.1, 0.9]), 4, 2.0)
        self.assertIsNone(r.angstrom)
        self.assertEqual(r.bound_A, float('inf'))
        self.assertIn('below 0.143 from the first shell', r.text)
        self.assertEqual(schedule.cwred_lambda(r.bound_A), 0.0)

    def test_nan_fsc_gives_no_confidence(self):
        # an all-NaN FSC must not read as "never crosses" (which would give lambda 1)
        r = read_resolution(np.full(8, np.nan), 14, 2.0)
        self.assertTrue(r.crossed)
        self.assertEqual(schedule.cwred_lambda(r.bound_A), 0.0)

    def test_fsc_of_a_map_with_itself_never_crosses(self):
        rng = np.random.default_rng(0)
        vol = rng.normal(size=(16, 16, 16))
        r = read_resolution(fsc(vol, vol), 16, 1.5)
        self.assertFalse(r.crossed)
        self.assertEqual(r.bound_A, 3.0)


class TestSameNumberEverywhere(unittest.TestCase):
    """The same FSC fed to the hook and to the validation report gives the same number."""
    CURVE = np.array([1.0, 0.98, 0.95, 0.8, 0.6, 0.3, 0.16, 0.12, 0.05])  # box 16

    def test_validation_dict_matches_the_readout(self):
        d = metrics.resolution(self.CURVE, 16, 2.0, 0.143)
        r = read_resolution(self.CURVE, 16, 2.0, 0.143)
        self.assertEqual((d['resolution_A'], d['limit_A'], d['text']),
                         (r.angstrom, r.bound_A, r.text))
        self.assertAlmostEqual(d['resolution_A'], 16 * 2.0 / 6)
        never = metrics.resolution(np.ones(9), 16, 2.0, 0.143)
        self.assertEqual(never['text'], read_resolution(np.ones(9), 16, 2.0).text)
