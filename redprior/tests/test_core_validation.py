"""Known-answer tests of core.geometry.rotations, core.validation.metrics and core.validation.report (pure numpy, seconds).

Run with `python -m pytest redprior/tests/test_core_validation.py`.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

from redprior.core.geometry import rotations as angles
from redprior.core.fourier import filters as fourier
from redprior.core.fourier.grid import radius2
from redprior.core.io.jsonfile import read_json, write_json
from redprior.core.validation import report
from redprior.core.validation import metrics as validation
from redprior.core.validation import poses
from redprior.core.fourier.fsc import fsc
from redprior.core.geometry.euler import euler_to_matrix, uniform_rotations

GROUPS = {'C1': 1, 'C2': 2, 'C4': 4, 'C7': 7, 'D2': 4, 'D3': 6, 'D7': 14, 'T': 12, 'O': 24,
          'I': 60, 'I1': 60, 'I2': 60, 'I3': 60, 'I4': 60}


def random_poses(n, seed=0):
    return euler_to_matrix(*uniform_rotations(n, np.random.default_rng(seed)))


def random_rotations(n, max_angle, rng):
    """n rotations about random axes by angles uniform in [0, max_angle] (deg)."""
    return angles.axis_angle_matrix(rng.normal(size=(n, 3)), rng.uniform(0, max_angle, n))


def pseudo_protein(box=40, atoms=300, radius=9.0, sigma=0.8, seed=0):
    """Gaussian 'atoms' inside a sphere: a protein-like map without any structure file."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(atoms, 3))
    pts *= (radius * rng.uniform(0, 1, atoms) ** (1 / 3) / np.linalg.norm(pts, axis=1))[:, None]
    c = np.arange(box) - box // 2
    z, y, x = np.meshgrid(c, c, c, indexing='ij')
    vol = np.zeros((box,) * 3)
    for pz, py, px in pts:
        vol += np.exp(-((z - pz) ** 2 + (y - py) ** 2 + (x - px) ** 2) / (2 * sigma ** 2))
    return vol


def bfactor(vol, pixel, B):
    """Signal decaying with resolution like a real reconstruction (exp(-B s^2 / 4))."""
    box = vol.shape[0]
    s2 = (np.arange(box) / (box * pixel)) ** 2
    return fourier.shell_filter(vol, np.exp(-B * s2 / 4.0))


class TestSymmetry(unittest.TestCase):
    def test_group_sizes_and_closure(self):
        for sym, order in GROUPS.items():
            ops = angles.symmetry_operators(sym)
            self.assertEqual(len(ops), order, sym)
            self.assertEqual(angles.symmetry_order(sym), order, sym)
            np.testing.assert_allclose(ops[0], np.eye(3), atol=1e-12)
            # proper rotations
            np.testing.assert_allclose(ops @ ops.transpose(0, 2, 1),
                                       np.broadcast_to(np.eye(3), ops.shape), atol=1e-6)
            np.testing.assert_allclose(np.linalg.det(ops), 1.0, atol=1e-6)
            # closure: every product is in the group, and operators are distinct
            prod = np.einsum('aij,bjk->abik', ops, ops).reshape(-1, 1, 3, 3)
            dist = np.abs(prod - ops[None]).max(axis=(2, 3))
            self.assertLess(dist.min(axis=1).max(), 1e-5, sym)
            if order > 1:
                pair = np.abs(ops[:, None] - ops[None]).max(axis=(2, 3))
                self.assertGreater(pair[~np.eye(order, dtype=bool)].min(), 0.1, sym)

    def test_cn_dn_axes(self):
        # Cn about z; Dn adds the 2-fold about x (RELION's orientation)
        c4 = angles.symmetry_operators('C4')
        np.testing.assert_allclose(c4[:, 2, 2], 1.0)
        d2 = angles.symmetry_operators('d2')
        self.assertTrue(any(np.allclose(S, np.diag([1.0, -1.0, -1.0])) for S in d2))

    def test_bad_symmetry_is_explained(self):
        for bad in ('C0', 'D1', 'C2v', 'X'):
            with self.assertRaises(ValueError) as ctx:
                angles.symmetry_operators(bad)
            self.assertIn('symmetry', str(ctx.exception).lower())

    @unittest.skipUnless(shutil.which('relion_refine'), 'RELION not installed')
    def test_same_operators_as_relion(self):
        tmp = tempfile.mkdtemp()
        try:
            for sym in ('C3', 'D4', 'T', 'O', 'I1', 'I2', 'I3', 'I4'):
                out = subprocess.run(['relion_refine', '--sym', sym, '--print_symmetry_ops',
                                      '--o', os.path.join(tmp, 'x')], capture_output=True,
                                     text=True, timeout=60).stdout.splitlines()
                rel = np.array([[[float(v) for v in out[i + k].split()] for k in (1, 2, 3)]
                                for i, line in enumerate(out) if line.strip().startswith('R(')])
                ours = angles.symmetry_operators(sym)
                self.assertEqual(len(rel), len(ours), sym)
                d = np.abs(rel[:, None] - ours[None]).max(axis=(2, 3))
                self.assertLess(d.min(axis=1).max(), 1e-3, sym)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class TestAngularDistance(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(7)
        self.R = random_poses(200, seed=1)

    def test_self_is_zero(self):
        np.testing.assert_allclose(angles.angular_distance(self.R, self.R), 0.0, atol=1e-5)

    def test_known_rotation(self):
        D = random_rotations(200, 170.0, self.rng)
        expected = angles.rotation_angle(D)
        np.testing.assert_allclose(angles.angular_distance(self.R, self.R @ D), expected,
                                   atol=1e-5)
        # symmetric in its arguments
        np.testing.assert_allclose(angles.angular_distance(self.R @ D, self.R), expected,
                                   atol=1e-5)

    def test_euler_round_trip_and_axis_angle(self):
        rot, tilt, psi = angles.matrix_to_euler(self.R)
        np.testing.assert_allclose(angles.euler_to_matrix(rot, tilt, psi), self.R, atol=1e-9)
        Rz = angles.axis_angle_matrix([0, 0, 1], 30.0)[0]
        np.testing.assert_allclose(Rz[:2, :2], [[np.cos(np.pi / 6), -0.5],
                                                [0.5, np.cos(np.pi / 6)]], atol=1e-12)
        self.assertAlmostEqual(angles.rotation_angle(Rz)[0], 30.0, places=9)

    def test_symmetry_equivalent_poses(self):
        for sym in ('C4', 'D2', 'D7', 'T', 'O', 'I'):
            ops = angles.symmetry_operators(sym)
            S = ops[self.rng.integers(len(ops), size=len(self.R))]
            equiv = self.R @ S
            np.testing.assert_allclose(angles.angular_distance(self.R, equiv, sym), 0.0,
                                       atol=1e-3, err_msg=sym)
            # ... but not without the symmetry (the non-identity operators move them)
            moved = np.any(S != np.eye(3), axis=(1, 2))
            self.assertGreater(angles.angular_distance(self.R, equiv)[moved].min(), 30.0, sym)
            # and a real error survives the minimisation
            D = angles.axis_angle_matrix(self.rng.normal(size=(len(self.R), 3)), 4.0)
            np.testing.assert_allclose(angles.angular_distance(self.R, equiv @ D, sym), 4.0,
                                       atol=1e-3, err_msg=sym)

    def test_broadcast_and_operator(self):
        d, k = angles.angular_distance(np.eye(3), angles.symmetry_operators('C4')[2], 'C4',
                                       return_operator=True)
        self.assertAlmostEqual(d[0], 0.0, places=5)
        self.assertEqual(k[0], 2)
        with self.assertRaises(ValueError):
            angles.angular_distance(self.R[:3], self.R[:4])

    def test_percentiles(self):
        stats = angles.error_percentiles(np.arange(101.0))
        self.assertEqual((stats['p50'], stats['p90'], stats['p95'], stats['max']),
                         (50.0, 90.0, 95.0, 100.0))
        self.assertEqual(stats['n'], 101)
        empty = angles.error_percentiles([])
        self.assertEqual(empty['n'], 0)
        self.assertIsNone(empty['p50'])


class TestFrameAndHand(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(3)
        self.R = random_poses(300, seed=2)
        self.Q = angles.axis_angle_matrix([0.3, -0.5, 0.8], 37.0)[0]

    def test_rotated_copy_aligns_to_zero(self):
        other = self.R @ self.Q.T          # the other map's frame is rotated by Q
        self.assertGreater(np.median(angles.angular_distance(self.R, other)), 10.0)
        G = angles.align_rotation_sets(self.R, other)
        np.testing.assert_allclose(G, self.Q, atol=1e-6)
        np.testing.assert_allclose(angles.angular_distance(self.R, other @ G), 0.0, atol=1e-4)
        out = angles.compare_rotation_sets(self.R, other, align=True)
        self.assertLess(out['percentiles']['max'], 1e-4)
        self.assertAlmostEqual(out['G_angle'], 37.0, places=4)
        self.assertEqual(out['hand'], 'same')

    def test_robust_to_outliers_and_symmetry(self):
        ops = angles.symmetry_operators('D2')
        S = ops[self.rng.integers(len(ops), size=len(self.R))]
        other = self.R @ S @ random_rotations(len(self.R), 2.0, self.rng) @ self.Q.T
        other[:90] = random_poses(90, seed=9)   # 30 % wrong poses
        G = angles.align_rotation_sets(self.R, other, 'D2')
        # G is defined up to the group: compare with the closest equivalent of Q
        self.assertLess(angles.angular_distance(self.Q, G, 'D2')[0], 0.5)
        err = angles.angular_distance(self.R, other @ G, 'D2')
        self.assertLess(np.median(err[90:]), 2.0)

    def test_every_particle_counts_under_symmetry(self):
        # C7 operators are not involutions: each particle's estimate of G must undo its own
        # operator, or only the particles with S = identity would agree and the mean of a
        # noisy set would rest on a seventh of it.
        ops = angles.symmetry_operators('C7')
        S = ops[self.rng.integers(len(ops), size=len(self.R))]
        other = self.R @ S @ random_rotations(len(self.R), 2.0, self.rng) @ self.Q.T
        G = angles.align_rotation_sets(self.R, other, 'C7')
        self.assertLess(angles.angular_distance(self.Q, G, 'C7')[0], 0.06)

    def test_mirror_is_detected(self):
        rot, tilt, psi = angles.matrix_to_euler(self.R)
        np.testing.assert_allclose(angles.euler_to_matrix(*angles.mirror_euler(rot, tilt, psi)),
                                   angles.mirror(self.R), atol=1e-9)
        np.testing.assert_allclose(angles.mirror(angles.mirror(self.R)), self.R, atol=1e-12)
        noise = random_rotations(len(self.R), 2.0, self.rng)
        wrong_hand = angles.mirror(self.R @ noise) @ self.Q.T
        out = angles.compare_rotation_sets(self.R, wrong_hand, align=True)
        self.assertEqual(out['hand'], 'mirror')
        self.assertLess(out['median_mirror'], 2.0)
        self.assertGreater(out['median_same'], 10 * out['median_mirror'])
        # no global rotation can fit the other hand
        self.assertGreater(out['percentiles']['p50'], 20.0)
        right = angles.compare_rotation_sets(self.R, self.R @ noise @ self.Q.T, align=True)
        self.assertEqual(right['hand'], 'same')
        self.assertGreater(right['median_mirror'], 10 * right['median_same'])

    def test_mirror_with_symmetry(self):
        for sym in ('C4', 'D2'):
            ops = angles.symmetry_operators(sym)
            S = ops[self.rng.integers(len(ops), size=len(self.R))]
            out = angles.compare_rotation_sets(self.R, angles.mirror(self.R @ S), sym,
                                               align=True)
            self.assertEqual(out['hand'], 'mirror', sym)
            self.assertLess(out['median_mirror'], 1e-3, sym)
            self.assertGreater(out['median_same'], 5.0, sym)


class TestFsc(unittest.TestCase):
    box, pixel = 32, 2.0

    def test_self_fsc_is_one(self):
        vol = pseudo_protein(self.box)
        np.testing.assert_allclose(fsc(vol, vol), 1.0, atol=1e-9)

    def test_independent_noise_matches_snr(self):
        # signal: white noise shaped per shell by a(k); noise: white, unit variance.
        # Both have flat spectra within a shell, so SNR(k) = a(k)^2 exactly in expectation.
        rng = np.random.default_rng(0)
        box = self.box
        k = np.arange(box)
        a = 3.0 * np.exp(-(k / 7.0) ** 2) + 0.2
        signal = fourier.shell_filter(rng.standard_normal((box,) * 3), a)
        n1 = rng.standard_normal((box,) * 3)
        n2 = rng.standard_normal((box,) * 3)
        curve = fsc(signal + n1, signal + n2)
        snr = a[:box // 2 + 1] ** 2
        expected = snr / (1.0 + snr)
        # standard error of a shell correlation ~ (1 - rho^2) / sqrt(coefficients in shell)
        from redprior.core.fourier.grid import shell_index
        counts = np.bincount(shell_index(box).ravel(), minlength=box)[:box // 2 + 1]
        tol = 4.0 * (1.0 - expected ** 2) / np.sqrt(counts) + 0.01
        shells = np.arange(3, box // 2 + 1)
        np.testing.assert_array_less(np.abs(curve - expected)[shells], tol[shells])
        # and the curve really spans the range (the test is not trivially loose)
        self.assertGreater(expected[3], 0.85)
        self.assertLess(expected[-1], 0.05)


class TestPhaseRandomisation(unittest.TestCase):
    box, pixel = 32, 2.0

    def setUp(self):
        rng = np.random.default_rng(1)
        self.signal = bfactor(pseudo_protein(self.box, radius=7.0), self.pixel, 200.0)
        s = 0.5 * self.signal.std()
        self.h1 = self.signal + rng.normal(0, s, self.signal.shape)
        self.h2 = self.signal + rng.normal(0, s, self.signal.shape)

    def test_randomise_keeps_amplitudes_and_low_shells(self):
        r = validation.randomise_phases(self.h1, 8, seed=3)
        f0, f1 = np.fft.rfftn(self.h1), np.fft.rfftn(r)
        np.testing.assert_allclose(np.abs(f1), np.abs(f0), rtol=1e-6, atol=1e-9)
        low = radius2(self.box, 3) < 64
        np.testing.assert_allclose(f1[low], f0[low], rtol=1e-9, atol=1e-9)
        self.assertLess(abs(np.corrcoef(f1[~low].real, f0[~low].real)[0, 1]), 0.1)

    def test_randomisation_shell(self):
        curve = np.array([1.0, 0.95, 0.85, 0.79, 0.5, 0.2])
        self.assertEqual(validation.randomisation_shell(curve), 3)
        self.assertEqual(validation.randomisation_shell(np.ones(6)), -1)
        self.assertEqual(validation.randomisation_shell(curve, 32, 2.0, from_A=10.0), 6)

    def test_correction_formula(self):
        masked = np.array([1.0, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3])
        rand = np.array([1.0, 0.9, 0.5, 0.3, 0.2, 0.1, 0.0])
        out = validation.corrected_fsc(masked, rand, 2)
        np.testing.assert_allclose(out[:4], masked[:4])
        np.testing.assert_allclose(out[4:], (masked[4:] - rand[4:]) / (1 - rand[4:]))

    def test_mask_of_ones_leaves_fsc_unchanged(self):
        ones = np.ones_like(self.h1)
        out = validation.half_map_fscs(self.h1, self.h2, ones, self.box, self.pixel, seed=5)
        self.assertGreater(out['randomise_shell'], 0)
        np.testing.assert_allclose(out['masked'], out['unmasked'], atol=1e-12)
        # the randomised halves are independent beyond the randomisation shell: their FSC is
        # noise around 0, so the correction changes each shell by no more than that noise
        from redprior.core.fourier.grid import shell_index
        counts = np.bincount(shell_index(self.box).ravel())[:self.box // 2 + 1]
        tol = 4.0 / np.sqrt(counts * 4)          # 4 randomisations are averaged
        beyond = np.arange(out['randomise_shell'] + 2, self.box // 2 + 1)
        np.testing.assert_array_less(np.abs(out['random'][beyond]), tol[beyond])
        np.testing.assert_array_less(np.abs(out['corrected'] - out['unmasked'])[beyond],
                                     tol[beyond])
        np.testing.assert_allclose(out['corrected'][:out['randomise_shell'] + 2],
                                   out['unmasked'][:out['randomise_shell'] + 2])
        # resolution unchanged
        self.assertEqual(validation.resolution(out['corrected'], self.box, self.pixel)['shell'],
                         validation.resolution(out['unmasked'], self.box, self.pixel)['shell'])

    def test_never_below_08_is_reported(self):
        out = validation.half_map_fscs(self.signal, self.signal, np.ones_like(self.signal),
                                       self.box, self.pixel)
        self.assertEqual(out['randomise_shell'], -1)
        self.assertIn('never drops below 0.8', out['note'])
        np.testing.assert_allclose(out['corrected'], out['masked'])

    def test_tight_mask_is_corrected_down(self):
        # A sharp-edged mask correlates the noise of the halves: the masked FSC is inflated,
        # the phase-randomised FSC measures that and the correction removes it.
        from redprior.core.geometry.masks import spherical_mask
        sharp = spherical_mask(self.box, 6, soft_px=0)
        out = validation.half_map_fscs(self.h1, self.h2, sharp, self.box, self.pixel)
        beyond = np.arange(out['randomise_shell'] + 2, self.box // 2 + 1)
        self.assertGreater(out['random'][beyond].mean(), 0.05)
        self.assertTrue(np.all(out['corrected'][beyond] <= out['masked'][beyond] + 1e-9))


class TestValidateMaps(unittest.TestCase):
    box, pixel = 40, 3.0

    @classmethod
    def setUpClass(cls):
        cls.gt = pseudo_protein(cls.box, atoms=400, radius=10.0)
        cls.signal = bfactor(cls.gt, cls.pixel, 800.0)
        cls.sigma = 0.15 * cls.gt.std()

    def halves(self, seed, common=None):
        rng = np.random.default_rng(seed)
        h = [self.signal + rng.normal(0, self.sigma, self.gt.shape) for _ in range(2)]
        if common is not None:
            h = [x + common for x in h]
        return h

    def overfitted(self, seed):
        """Halves sharing invented detail beyond 15 A: they agree, the truth does not."""
        rng = np.random.default_rng(seed + 100)
        fake = fourier.shell_filter(rng.normal(0, 1, self.gt.shape),
                                    (np.arange(self.box) > self.box * self.pixel / 15.0) * 1.0)
        fake *= 2 * self.sigma / fake.std()
        low = fourier.lowpass(self.signal, self.pixel, 15.0)
        return [low + fake + np.random.default_rng(seed + i).normal(0, 0.3 * self.sigma,
                                                                     self.gt.shape)
                for i in range(2)]

    def test_honest_is_consistent(self):
        for seed in range(3):
            h1, h2 = self.halves(seed)
            res = validation.validate_maps(h1, h2, self.pixel, ground_truth=self.gt)
            over = res['overestimation']
            self.assertFalse(over['overestimated'], over['verdict'])
            c = res['curves']
            k_half = c['half_corrected']['resolution']['0.143']['shell']
            k_gt = c['gt_masked']['resolution']['0.5']['shell']
            self.assertLessEqual(abs(k_half - k_gt), 1, (seed, k_half, k_gt))
            self.assertTrue(5 < k_half < self.box // 2, k_half)
            self.assertEqual(res['mask']['source'], 'auto (ground truth)')
            self.assertTrue(0.02 < res['mask']['fraction'] < 0.6)
            self.assertEqual(set(c), {'half_unmasked', 'half_masked', 'half_random',
                                      'half_corrected', 'gt_masked', 'gt_unmasked',
                                      'gt_expected'})

    def test_overfitted_is_flagged(self):
        h1, h2 = self.overfitted(0)
        res = validation.validate_maps(h1, h2, self.pixel, ground_truth=self.gt)
        self.assertTrue(res['overestimation']['overestimated'], res['overestimation'])
        self.assertTrue(res['overestimation']['verdict'].startswith('OVERESTIMATED'))
        check = res['overestimation']['checks'][0]
        self.assertGreater(check['shell_excess'], 3)
        self.assertIn('never crosses', check['claimed']['text'])

    def test_against_unregularised(self):
        h1, h2 = self.overfitted(1)
        u1, u2 = self.halves(1)
        res = validation.validate_maps(h1, h2, self.pixel, unreg_half1=u1, unreg_half2=u2)
        self.assertEqual(res['mask']['source'], 'auto (half-map average)')
        self.assertTrue(res['overestimation']['overestimated'])
        self.assertEqual(res['overestimation']['checks'][0]['against'],
                         'the unregularised half-maps')
        honest = validation.validate_maps(u1, u2, self.pixel, unreg_half1=u1, unreg_half2=u2)
        self.assertFalse(honest['overestimation']['overestimated'])
        none = validation.validate_maps(u1, u2, self.pixel)
        self.assertIsNone(none['overestimation']['overestimated'])
        self.assertIn('not checked', none['overestimation']['verdict'])

    def test_input_errors(self):
        h1, h2 = self.halves(0)
        with self.assertRaises(ValueError) as ctx:
            validation.validate_maps(h1, h2, self.pixel, ground_truth=self.gt[:-2, :-2, :-2])
        self.assertIn('same box', str(ctx.exception))
        with self.assertRaises(ValueError):
            validation.validate_maps(h1, h2, self.pixel, unreg_half1=h1)
        with self.assertRaises(ValueError):
            validation.validate_maps(h1, h2, self.pixel, mask=2 * np.ones_like(h1))

    def test_given_mask_and_resolution(self):
        from redprior.core.geometry.masks import spherical_mask
        h1, h2 = self.halves(0)
        res = validation.validate_maps(h1, h2, self.pixel, mask=spherical_mask(self.box, 14),
                                       randomise_from_A=20.0)
        self.assertEqual(res['mask']['source'], 'given')
        self.assertEqual(res['randomise_shell'], 6)
        self.assertAlmostEqual(res['randomise_from_A'], 20.0)


class TestPoseErrorsAndReport(unittest.TestCase):
    def test_pose_errors(self):
        rng = np.random.default_rng(4)
        R = random_poses(120, seed=5)
        wanted = np.linspace(0, 12, 120)
        rng.shuffle(wanted)
        est = R @ angles.axis_angle_matrix(rng.normal(size=(120, 3)), wanted)
        shifts = rng.normal(size=(120, 2))
        direction = rng.normal(size=(120, 2))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        out = poses.pose_errors(R, est, 'C1', shifts, shifts + 1.5 * direction)
        np.testing.assert_allclose(out['angular_errors'], wanted, atol=1e-4)
        self.assertAlmostEqual(out['angular']['p90'], np.percentile(wanted, 90), places=4)
        np.testing.assert_allclose(out['shift_errors'], 1.5, atol=1e-9)
        self.assertEqual(out['hand'], 'same')

    def test_report_files(self):
        box, pixel = 32, 3.0
        gt = pseudo_protein(box, radius=7.0)
        rng = np.random.default_rng(0)
        sig = bfactor(gt, pixel, 500.0)
        h1, h2 = (sig + rng.normal(0, 0.2 * gt.std(), gt.shape) for _ in range(2))
        res = validation.validate_maps(h1, h2, pixel, ground_truth=gt)
        R = random_poses(50)
        res['poses'] = poses.pose_errors(R, R @ random_rotations(50, 5.0, rng), 'C1',
                                              np.zeros((50, 2)), rng.normal(size=(50, 2)))
        tmp = tempfile.mkdtemp()
        try:
            path = os.path.join(tmp, 'validation.json')
            write_json(path, res)
            back = read_json(path)
            self.assertEqual(back['curves']['half_corrected']['resolution']['0.143']['shell'],
                             res['curves']['half_corrected']['resolution']['0.143']['shell'])
            paths = report.write_report(back, tmp, info={'test': 'report'})
            for name in ('fsc', 'poses', 'html', 'pdf'):
                self.assertGreater(os.path.getsize(paths[name]), 1000, name)
            with open(paths['html']) as fh:
                page = fh.read()
            self.assertIn('fsc.png', page)
            self.assertIn('Overestimation check', page)
            with open(paths['pdf'], 'rb') as fh:
                self.assertEqual(fh.read(4), b'%PDF')
            lines = report.summary_lines(back)
            self.assertTrue(lines[0].startswith('Gold-standard'))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    unittest.main()


class TestQualityMetrics(unittest.TestCase):
    """The quality benchmark's figures on constructed maps whose FSCs are known."""
    box, pixel = 40, 2.0

    def setUp(self):
        self.truth = pseudo_protein(self.box)
        rng = np.random.default_rng(3)
        self.noise = [fourier.lowpass(rng.normal(size=(self.box,) * 3), self.pixel, 4.5)
                      * 0.5 * self.truth.std() for _ in range(2)]

    def test_perfect_halves_reach_nyquist_and_say_so(self):
        R = random_poses(50)
        m = validation.quality_metrics(self.truth, self.truth, self.truth, self.pixel, R, R)
        self.assertEqual((m['gt_res_05'], m['gt_res_05_crossed']), (4.0, False))
        self.assertGreater(m['gt_fsc_mean'], 0.999)
        self.assertEqual(m['overestimation_shells'], 0)
        self.assertFalse(m['overestimated'])
        self.assertAlmostEqual(m['ang_err_median'], 0.0, places=4)

    def test_lowpassed_halves_cross_at_the_cutoff(self):
        half = fourier.lowpass(self.truth, self.pixel, 10.0, edge_shells=0.5)
        m = validation.quality_metrics(half + self.noise[0], half + self.noise[1], self.truth,
                                       self.pixel)
        # box 40 at 2 A/px: 10 A is shell 8; the truth FSC drops right after it
        self.assertTrue(m['gt_res_05_crossed'])
        # (the mask spreads the cut by about a shell)
        self.assertTrue(8.5 <= m['gt_res_05'] <= 11.5, m['gt_res_05'])
        self.assertLess(m['gt_fsc_mean'], 0.5)

    def test_shared_noise_is_flagged_as_overestimation(self):
        # both halves carry the SAME noise (no independent halves, as a prior that invents
        # detail in both): they agree with each other far beyond what matches the truth
        shared = fourier.lowpass(self.truth, self.pixel, 10.0, edge_shells=0.5) + self.noise[0]
        m = validation.quality_metrics(shared, shared.copy(), self.truth, self.pixel)
        self.assertGreater(m['overestimation_shells'], 1)
        self.assertTrue(m['overestimated'])
        honest = validation.quality_metrics(shared, fourier.lowpass(
            self.truth, self.pixel, 10.0, edge_shells=0.5) + self.noise[1], self.truth, self.pixel)
        self.assertFalse(honest['overestimated'])
        # over the whole curve: shared noise makes the halves predict an FSC to the truth far
        # above the measured one; independent noise predicts it (excess ~0)
        self.assertGreater(m['fsc_excess_mean'], 0.3)
        self.assertLess(abs(honest['fsc_excess_mean']), 0.05)
        self.assertLess(honest['fsc_excess_max'], m['fsc_excess_max'])
        # at the shell the halves claim, the shared-noise map no longer matches the truth
        # (beyond its 10 A content); the honest map still matches it at 0.5 or better there
        self.assertLess(m['gt_fsc_at_claim'], 0.3)
        self.assertGreaterEqual(honest['gt_fsc_at_claim'], 0.5)
        v = validation.validate_maps(shared, shared.copy(), self.pixel, ground_truth=self.truth,
                                     repeats=1)
        self.assertIn('over the whole curve the half-map FSC exceeds what the FSC to the truth '
                      'supports by %+.3f on average' % m['fsc_excess_mean'],
                      v['overestimation']['verdict'])
        self.assertIn('at the last shell the half-maps claim (%.2f Å) the FSC to the truth is '
                      '%.2f (0.5 for an honest claim)' % (m['half_res_masked'],
                                                          m['gt_fsc_at_claim']),
                      v['overestimation']['verdict'])

    def test_angular_errors_of_known_rotations(self):
        rng = np.random.default_rng(4)
        R = random_poses(400, seed=5)
        R_est = R @ random_rotations(400, 10.0, rng)  # uniform 0..10 deg: median 5, p90 9
        m = validation.quality_metrics(self.truth, self.truth, self.truth, self.pixel, R, R_est)
        self.assertAlmostEqual(m['ang_err_median'], 5.0, delta=0.6)
        self.assertAlmostEqual(m['ang_err_p90'], 9.0, delta=0.6)


class TestPseudoSymmetry(unittest.TestCase):
    """A subset refined in an orientation related by one rotation is found and explained."""

    def test_a_pseudo_two_fold_subset(self):
        rng = np.random.default_rng(8)
        R = random_poses(500, seed=9)
        S = angles.axis_angle_matrix(np.array([[0.0, 0.6, 0.8]]), np.array([178.0]))[0]
        R_est = R @ random_rotations(500, 3.0, rng)  # small errors everywhere
        flipped = rng.choice(500, 70, replace=False)  # 14 % in the related orientation
        R_est[flipped] = R_est[flipped] @ S
        result = poses.pose_errors(R, R_est)
        ps = result['pseudo_symmetry']
        self.assertAlmostEqual(ps['fraction'], 0.14, delta=0.01)
        self.assertAlmostEqual(ps['angle'], 178.0, delta=4.0)
        self.assertGreater(abs(np.dot(ps['axis'], [0.0, 0.6, 0.8])), 0.97)
        self.assertIn('14 % of the particles (70)', ps['text'])
        self.assertTrue(any('Near-symmetry' in n for n in report.pose_notes(result)))

    def test_scattered_errors_are_not_a_symmetry(self):
        R = random_poses(300, seed=1)
        R_est = random_poses(300, seed=2)  # unrelated poses: no common rotation
        self.assertIsNone(poses.pose_errors(R, R_est)['pseudo_symmetry'])
        self.assertIsNone(poses.pose_errors(R, R)['pseudo_symmetry'])


class TestShiftBias(unittest.TestCase):
    """Origin errors: a convention offset shows as a mean error; grid quantisation is said."""

    def test_known_offset_and_non_zero_true_shifts(self):
        rng = np.random.default_rng(3)
        R = random_poses(200, seed=4)
        true = rng.uniform(-3, 3, (200, 2))          # non-zero true shifts
        est = true + np.array([0.3, -0.2])           # a systematic offset
        r = poses.pose_errors(R, R, 'C1', true, est)
        np.testing.assert_allclose(r['shift_bias']['mean_A'], [0.3, -0.2], atol=1e-9)
        np.testing.assert_allclose(r['shift_errors'], np.hypot(0.3, 0.2), atol=1e-9)
        self.assertNotIn('quantised', r['shift_bias']['text'])

    def test_origins_on_a_grid_are_said_to_be_quantised(self):
        # what RELION gave in the demo: origins only at -0.328 or +0.535 A per axis
        rng = np.random.default_rng(5)
        R = random_poses(300, seed=6)
        est = rng.choice([-0.328, 0.535], (300, 2))
        r = poses.pose_errors(R, R, 'C1', np.zeros((300, 2)), est)
        b = r['shift_bias']
        self.assertEqual(b['distinct_values'], [2, 2])
        self.assertAlmostEqual(b['grid_step_A'], 0.863, places=3)
        self.assertIn('quantised by the refinement', b['text'])
        self.assertAlmostEqual(float(np.min(r['shift_errors'])), np.hypot(0.328, 0.328), 3)
