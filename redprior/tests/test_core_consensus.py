"""Consensus of pose sets and map alignment (core only, no Scipion): known answers.

Run with `python -m pytest redprior/tests/test_core_consensus.py -q`.
"""
import os
import tempfile
import unittest

import numpy as np
from scipy.spatial.transform import Rotation

from redprior.core.io.shipped import DEMO_MODEL
from redprior.core.geometry import align3d
from redprior.core.geometry import rotations as angles
from redprior.core.geometry import euler
from redprior.core.simulation import particles as simulate
from redprior.core.simulation import structure
from redprior.core.validation import consensus, consensus_frames, consensus_maps
from redprior.core.validation import consensus_report, consensus_results
from redprior.core.validation.consensus import PoseSet

BOX, PIXEL = 32, 4.0


def _random_poses(n, seed):
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=seed).as_matrix()
    return R, rng.uniform(-4.0, 4.0, (n, 2))


def _tilt(R, deg, seed):
    """Each pose turned by exactly `deg` degrees about a random axis (on the right)."""
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(len(R), 3))
    return R @ angles.axis_angle_matrix(axes, np.full(len(R), deg))


def _noisy(R, shifts, seed, deg=1.5, shift_A=0.5):
    """Small random disagreements well inside the tolerances."""
    rng = np.random.default_rng(seed)
    R = _tilt(R, deg, seed)
    return R, shifts + rng.uniform(-shift_A, shift_A, shifts.shape) / np.sqrt(2)


class TestConsensusRule(unittest.TestCase):
    N = 80

    def setUp(self):
        self.R, self.o = _random_poses(self.N, 1)
        self.ids = np.arange(1, self.N + 1)

    def _set(self, R, o, name, ids=None):
        return PoseSet(self.ids if ids is None else ids, R, o, name)

    def test_two_engines_known_disagreements(self):
        R2, o2 = _noisy(self.R, self.o, 2)
        bad_angle = np.array([3, 10, 11, 40])            # 0-based rows
        bad_shift = np.array([5, 60])
        R2[bad_angle] = _tilt(self.R[bad_angle], 25.0, 3)
        o2[bad_shift] += [5.0, 0.0]
        res = consensus.consensus([self._set(self.R, self.o, 'relion'),
                                   self._set(R2, o2, 'cwred')], angle_tol=10.0, shift_tol=3.0)
        expected = np.sort(self.ids[np.concatenate([bad_angle, bad_shift])])
        np.testing.assert_array_equal(res.disagreeing_ids, expected)
        self.assertEqual(len(res.agreeing_ids), self.N - len(expected))
        self.assertEqual(res.min_agree, 2)
        np.testing.assert_allclose(res.angle[0, bad_angle], 25.0, atol=1e-6)
        s = res.summary()
        self.assertEqual((s['n_common'], s['n_agree'], s['n_disagree']),
                         (self.N, self.N - 6, 6))
        self.assertAlmostEqual(s['fraction_agree'], (self.N - 6) / self.N)
        self.assertLess(s['pairs'][0]['angle']['p50'], 2.0)
        self.assertEqual(s['pairs'][0]['names'], ['relion', 'cwred'])
        # shifts ignored: only the angle outliers remain
        res2 = consensus.consensus([self._set(self.R, self.o, 'a'), self._set(R2, o2, 'b')],
                                   angle_tol=10.0, shift_tol=0)
        np.testing.assert_array_equal(res2.disagreeing_ids, np.sort(self.ids[bad_angle]))

    def test_three_engines_majority(self):
        R2, o2 = _noisy(self.R, self.o, 4)
        R3, o3 = _noisy(self.R, self.o, 5)
        p1 = np.array([1, 2, 3, 20, 21, 50])     # engine 2 wrong
        p2 = np.array([3, 20, 30, 31, 50, 70])   # engine 3 wrong
        R2[p1] = _tilt(self.R[p1], 40.0, 6)
        R3[p2] = _tilt(self.R[p2], 40.0, 7)      # different axes: 2 and 3 disagree too
        sets = [self._set(self.R, self.o, 'a'), self._set(R2, o2, 'b'),
                self._set(R3, o3, 'c')]
        res = consensus.consensus(sets, angle_tol=10.0, shift_tol=3.0)
        both = np.intersect1d(p1, p2)
        self.assertEqual(res.min_agree, 2)
        np.testing.assert_array_equal(res.disagreeing_ids, self.ids[both])
        # the majority group is the two engines that agree
        only1 = np.setdiff1d(p1, p2)
        only2 = np.setdiff1d(p2, p1)
        np.testing.assert_array_equal(res.group[only1], [[True, False, True]] * len(only1))
        np.testing.assert_array_equal(res.group[only2], [[True, True, False]] * len(only2))
        self.assertTrue(res.group[np.setdiff1d(np.arange(self.N), np.union1d(p1, p2))].all())
        # unanimity instead of majority: every perturbed particle goes
        strict = consensus.consensus(sets, 10.0, 3.0, min_agree=3)
        np.testing.assert_array_equal(strict.disagreeing_ids, self.ids[np.union1d(p1, p2)])
        # the kept particles' consensus pose is the mean of the agreeing engines
        d = angles.angular_distance(res.consensus_rotations, self.R)
        self.assertLess(np.median(d[res.agree]), 1.5)
        s = res.summary()
        self.assertEqual(len(s['pairs']), 3)
        kept = res.agree.sum()
        self.assertAlmostEqual(s['engines_in_majority']['a'], 1.0)
        self.assertAlmostEqual(s['engines_in_majority']['b'],
                               1.0 - len(only1) / kept)

    def test_four_engines_need_three(self):
        sets = [self._set(*_noisy(self.R, self.o, 10 + k), str(k)) for k in range(4)]
        # two engines wrong on particle 7, one engine wrong on particle 9
        for k in (2, 3):
            sets[k].rotations[7] = _tilt(self.R[7:8], 30.0 * k, k)[0]
        sets[1].rotations[9] = _tilt(self.R[9:10], 30.0, 1)[0]
        res = consensus.consensus(sets, 10.0, 3.0)
        self.assertEqual(res.min_agree, 3)
        np.testing.assert_array_equal(res.disagreeing_ids, [self.ids[7]])

    def test_different_sizes_and_ids(self):
        # engine b lost particles 1-10 and has 5 particles that a does not know
        ids_b = np.concatenate([self.ids[10:], [1001, 1002, 1003, 1004, 1005]])
        Rb = np.concatenate([self.R[10:], _random_poses(5, 9)[0]])
        ob = np.concatenate([self.o[10:], np.zeros((5, 2))])
        Rb[5] = _tilt(self.R[15:16], 20.0, 2)[0]            # id 16
        # shuffled order must not matter
        perm = np.random.default_rng(3).permutation(len(ids_b))
        a = self._set(self.R, self.o, 'a')
        b = PoseSet(ids_b[perm], Rb[perm], ob[perm], 'b')
        res = consensus.consensus([a, b], 10.0, 3.0)
        np.testing.assert_array_equal(res.ids, self.ids[10:])
        np.testing.assert_array_equal(res.disagreeing_ids, [16])
        self.assertEqual(res.not_common, {'a': 10, 'b': 5})
        np.testing.assert_array_equal(consensus.common_ids([a, b]), self.ids[10:])
        with self.assertRaises(KeyError):
            b.take([1, 2])

    def test_symmetry_equivalent_poses_agree(self):
        for sym in ('C4', 'D2', 'O'):
            ops = angles.symmetry_operators(sym)
            pick = np.random.default_rng(5).integers(0, len(ops), self.N)
            R2 = self.R @ ops[pick]                 # the same images, other asymmetric unit
            # 35 deg off: far from the true pose, but maybe near another symmetry copy
            R2[[4, 8]] = _tilt(self.R[[4, 8]], 35.0, 8)
            d = angles.angular_distance(self.R[[4, 8]], R2[[4, 8]], sym)
            expected = self.ids[[4, 8]][d > 10.0]
            res = consensus.consensus([self._set(self.R, self.o, 'a'),
                                       self._set(R2, self.o, 'b')], 10.0, 3.0, symmetry=sym)
            np.testing.assert_array_equal(res.disagreeing_ids, expected, sym)
            self.assertGreater(len(expected), 0, sym)
            # the mean pose is one of the symmetry-equivalent copies of the truth
            dm = angles.angular_distance(res.consensus_rotations[res.agree],
                                         self.R[res.agree], sym)
            self.assertLess(dm.max(), 1e-4, sym)   # arccos rounding near 0
            # without symmetry nearly everything disagrees
            c1 = consensus.consensus([self._set(self.R, self.o, 'a'),
                                      self._set(R2, self.o, 'b')], 10.0, 3.0)
            self.assertGreater(len(c1.disagreeing_ids), self.N // 2, sym)

    def test_validation(self):
        with self.assertRaises(ValueError):
            PoseSet([1, 1], self.R[:2], self.o[:2])
        with self.assertRaises(ValueError):
            PoseSet([1, 2, 3], self.R[:2], self.o[:2])
        with self.assertRaises(ValueError):
            consensus.consensus([self._set(self.R, self.o, 'a')])
        a = self._set(self.R, self.o, 'a')
        with self.assertRaises(ValueError):
            consensus.consensus([a, a], min_agree=3)

    def test_pose_frame_alignment(self):
        # engine b refined a rotated, shifted and mirrored copy of a's map
        truth = align3d.FrameTransform(Rotation.from_euler('zyz', [30, 50, -70], degrees=True)
                                       .as_matrix(), np.array([3.0, -2.0, 4.0]), True,
                                       pixel_size=PIXEL)
        Rb, ob = truth.inverse().apply_to_poses(*_noisy(self.R, self.o, 12))
        bad = np.array([0, 5, 33])
        Rb[bad] = _tilt(Rb[bad], 60.0, 13)
        a = self._set(self.R, self.o, 'a')
        b = self._set(Rb, ob, 'b')
        found = consensus_frames.align_pose_sets(a, b)
        self.assertTrue(found.mirrored)
        self.assertEqual(found.method, 'poses')
        self.assertLess(angles.rotation_angle(found.rotation.T @ truth.rotation)[0], 1.0)
        np.testing.assert_allclose(found.shift_A, truth.shift_A, atol=0.3)
        res = consensus.consensus([a, b.transformed(found)], 10.0, 3.0)
        np.testing.assert_array_equal(res.disagreeing_ids, self.ids[bad])
        self.assertAlmostEqual(found.score, 1 - len(bad) / self.N)


class TestVolumeAlignment(unittest.TestCase):
    """Known rotation + shift of the demo model's potential (box 32, 4 A/px)."""

    @classmethod
    def setUpClass(cls):
        cls.A = structure.potential_map(DEMO_MODEL, BOX, PIXEL)
        cls.truth = align3d.FrameTransform(
            Rotation.from_euler('zyz', [-120, 65, 35], degrees=True).as_matrix(),
            np.array([5.0, -3.0, 2.0]), False, pixel_size=PIXEL)

    def _check(self, mirrored):
        truth = align3d.FrameTransform(self.truth.rotation, self.truth.shift_A, mirrored,
                                       pixel_size=PIXEL)
        B = truth.inverse().apply_to_map(self.A)        # A = aligned B
        found = align3d.align_volumes(self.A, B, PIXEL)
        self.assertEqual(found.mirrored, mirrored)
        self.assertEqual(found.hand, 'mirror' if mirrored else 'same')
        err = angles.rotation_angle(found.rotation.T @ truth.rotation)[0]
        self.assertLess(err, 2.0)
        np.testing.assert_allclose(found.shift_A, truth.shift_A, atol=0.5)
        self.assertGreater(found.score, 0.95)
        self.assertLess(found.score_other_hand, found.score - 0.1)
        aligned = found.apply_to_map(B)
        self.assertGreater(np.corrcoef(aligned.ravel(), self.A.ravel())[0, 1], 0.97)
        self.assertAlmostEqual(align3d.score_alignment(self.A, B, found), found.score, 3)
        # poses of B's frame brought back with the recovered transform match the originals
        R, o = _random_poses(50, 21)
        Rb, ob = truth.inverse().apply_to_poses(R, o)
        Ra, oa = found.apply_to_poses(Rb, ob)
        self.assertLess(angles.angular_distance(Ra, R).max(), 2.0)
        self.assertLess(np.linalg.norm(oa - o, axis=1).max(), 1.0)
        # JSON round trip
        back = align3d.FrameTransform.from_dict(found.to_dict())
        np.testing.assert_allclose(back.rotation, found.rotation)
        self.assertEqual(back.mirrored, found.mirrored)

    def test_rotation_and_shift(self):
        self._check(False)

    def test_mirrored_copy(self):
        self._check(True)

    def test_pose_convention_with_projections(self):
        """The images of B at pose R_B equal those of A at the transformed pose (both hands),
        and the other placements of G or of the shift correction do not."""
        rot, tilt, psi = euler.uniform_rotations(12, 4)
        oB = np.random.default_rng(4).uniform(-5.0, 5.0, (12, 2))
        RB = euler.euler_to_matrix(rot, tilt, psi)
        for mirrored in (False, True):
            T = align3d.FrameTransform(self.truth.rotation, self.truth.shift_A, mirrored,
                                       pixel_size=PIXEL)
            B = T.inverse().apply_to_map(self.A)
            imgB = simulate.project(B, rot, tilt, psi, shifts_A=oB, pixel_size=PIXEL)
            RA, oA = T.apply_to_poses(RB, oB)

            def cc(R, o):
                imgA = simulate.project(self.A, *euler.matrix_to_euler(R), shifts_A=o,
                                        pixel_size=PIXEL)
                return np.array([np.corrcoef(x.ravel(), y.ravel())[0, 1]
                                 for x, y in zip(imgA, imgB)])
            self.assertGreater(cc(RA, oA).min(), 0.995, mirrored)
            self.assertLess(cc(T.rotation @ RB, oA).mean(), 0.9)      # G on the left: wrong
            self.assertLess(cc(RA, oB - (RA @ T.shift_A)[:, :2]).mean(), 0.9)  # sign of t
            # and core.geometry.rotations' convention says the same: R_A = mirror^h(R_B) @ G
            Rm = angles.mirror(RB) if mirrored else RB
            np.testing.assert_allclose(Rm @ T.G, RA, atol=1e-12)

    def test_map_transform_round_trip_and_mirror(self):
        T = self.truth
        back = T.apply_to_map(T.inverse().apply_to_map(self.A))
        self.assertGreater(np.corrcoef(back.ravel(), self.A.ravel())[0, 1], 0.99)
        m = align3d.mirror_map(self.A)
        c = BOX // 2
        np.testing.assert_array_equal(m[c + 3], self.A[c - 3])
        np.testing.assert_array_equal(align3d.mirror_map(m), self.A)
        # transform_map with mirrored=True and identity rotation is the same flip (its z = 0
        # plane would come from z = N, outside the box, where mirror_map wraps around)
        flipped = align3d.transform_map(self.A, np.eye(3), mirrored=True, order=1)
        np.testing.assert_allclose(flipped[1:], m[1:], atol=1e-5)

    def test_cross_fsc_and_report(self):
        rng = np.random.default_rng(0)
        noisy = self.A + rng.normal(0, self.A.std() * 3.0, self.A.shape).astype(np.float32)
        out = consensus_maps.cross_fsc([self.A, self.A.copy(), noisy], PIXEL,
                                  names=['x', 'y', 'noisy'])
        self.assertTrue(np.isnan(out['res05'][0, 0]))
        self.assertAlmostEqual(out['res05'][0, 1], 2 * PIXEL)       # identical: Nyquist
        self.assertFalse(out['crossed05'][0, 1])
        self.assertGreater(out['res05'][0, 2], 2 * PIXEL)
        self.assertTrue(out['crossed05'][0, 2])
        np.testing.assert_allclose(out['curves'][(0, 1)][1:], 1.0, atol=1e-6)
        self.assertEqual(len(out['freq']), BOX // 2 + 1)
        # a mask keeps the result finite and symmetric
        from redprior.core.geometry.masks import spherical_mask
        masked = consensus_maps.cross_fsc([self.A, noisy], PIXEL, mask=spherical_mask(BOX, 12))
        self.assertEqual(masked['res05'][0, 1], masked['res05'][1, 0])

        R, o = _random_poses(30, 2)
        R2 = R.copy()
        R2[:3] = _tilt(R[:3], 30.0, 1)
        res = consensus.consensus([PoseSet(np.arange(30), R, o, 'x'),
                                   PoseSet(np.arange(30), R2, o, 'y')])
        with tempfile.TemporaryDirectory() as tmp:
            path = consensus_results.save_result(tmp, res, [None, self.truth], out)
            data, arrays = consensus_results.load_result(tmp)
            self.assertEqual(data['summary']['n_disagree'], 3)
            self.assertEqual(data['fsc']['res05'][0][0], None)
            np.testing.assert_array_equal(arrays['agree'], res.agree)
            html = consensus_report.write_report(tmp)
            for name, _ in consensus_report.FIGURES:
                png = os.path.join(tmp, name + '.png')
                self.assertGreater(os.path.getsize(png), 5000, name)
                self.assertIn(name + '.png', open(html).read())
            self.assertTrue(path.endswith('consensus.json'))
            self.assertIn('cross-FSC x / noisy', open(html).read())
        # maps only (no particle sets): no per-particle arrays, the report still works
        with tempfile.TemporaryDirectory() as tmp:
            consensus_results.save_result(tmp, None, [None, self.truth], out)
            data, arrays = consensus_results.load_result(tmp)
            self.assertIsNone(data['summary'])
            self.assertIsNone(arrays)
            html = consensus_report.write_report(tmp)
            self.assertIn('cross_fsc.png', open(html).read())
            self.assertGreater(os.path.getsize(os.path.join(tmp, 'angles.png')), 1000)


if __name__ == '__main__':
    unittest.main()
