"""Tests of the simulation core: Fourier slicing, SNR, CTF and the RELION conventions.

Pure numpy/gemmi/finufft; the RELION checks run the real relion_project and
relion_reconstruct binaries and are skipped only when RELION is not installed.
"""
import functools
import os
import shutil
import subprocess
import tempfile
import unittest

import mrcfile
import numpy as np

from redprior.core.io.shipped import DEMO_MODEL
from redprior.core.fourier.grid import frequency_axes
from redprior.core.geometry.euler import euler_to_matrix, matrix_to_euler, uniform_rotations

from redprior.core.io import star_particles as P
from redprior.core.simulation import particles as S
from redprior.core.simulation import structure as T
from redprior.core.fourier.filters import lowpass
from redprior.core.fourier.fsc import correlation
from redprior.core.io.mrc import read_map, write_map

HAVE_RELION = shutil.which("relion_reconstruct") is not None
PX = 3.0
BOX = 40


@functools.lru_cache(maxsize=None)
def _ground_truth():
    """The demo model's potential map, computed once per module (shared, do not modify)."""
    return T.potential_map(DEMO_MODEL, BOX, PX)


def smooth_volume(n=20, seed=1):
    rng = np.random.default_rng(seed)
    vol = lowpass(rng.standard_normal((n, n, n)).astype(np.float32), 1.0, 5.0)
    return vol.astype(np.float64)


def _tmp_dir(test):
    d = tempfile.mkdtemp(prefix="redprior_simulate_")
    test.addCleanup(shutil.rmtree, d, True)
    return d


class _WithGroundTruth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ground_truth = _ground_truth()


# ----------------------------------------------------------------------------- model
class TestModel(_WithGroundTruth):
    def test_demo_model_summary(self):
        st = T.read_structure(DEMO_MODEL)
        info = T.structure_summary(st)
        self.assertEqual(info["chains"], 2)
        self.assertEqual(info["atoms"], 5785)
        self.assertTrue(70 < info["mass_kda"] < 80, info["mass_kda"])
        self.assertTrue(40 < info["max_radius_A"] < 55, info["max_radius_A"])
        self.assertLess(os.path.getsize(DEMO_MODEL), 1_000_000)

    def test_potential_map_centre_and_shape(self):
        vol = self.ground_truth
        self.assertTrue(vol.shape == (BOX, BOX, BOX) and vol.dtype == np.float32)
        w = np.clip(vol, 0, None)
        idx = np.indices(vol.shape).reshape(3, -1)
        com = (idx * w.ravel()).sum(1) / w.sum()
        # centre of mass of the (positive) potential at voxel box//2 in z, y and x
        self.assertTrue(np.all(np.abs(com - BOX // 2) < 0.5), com)

    def test_model_does_not_fit_in_box(self):
        with self.assertRaises(ValueError) as err:
            T.potential_map(DEMO_MODEL, 24, PX)
        msg = str(err.exception)
        self.assertTrue("does not fit" in msg and "at least 36" in msg, msg)

    def test_unreadable_model(self):
        tmp = _tmp_dir(self)
        bad = os.path.join(tmp, "bad.pdb")
        with open(bad, "w") as fh:
            fh.write("this is not a model\n")
        with self.assertRaisesRegex(ValueError, "bad.pdb"):
            T.read_structure(str(bad))
        with self.assertRaisesRegex(ValueError, "does not exist"):
            T.read_structure(os.path.join(tmp, "missing.cif"))


# ----------------------------------------------------------------------------- geometry
class TestGeometryAndProjection(unittest.TestCase):
    def test_euler_roundtrip_and_uniformity(self):
        rng = np.random.default_rng(0)
        rot, tilt, psi = uniform_rotations(20000, rng)
        R = euler_to_matrix(rot, tilt, psi)
        self.assertTrue(np.allclose(np.einsum("nij,nkj->nik", R, R), np.eye(3), atol=1e-12))
        self.assertTrue(np.allclose(np.linalg.det(R), 1.0))
        self.assertTrue(np.allclose(euler_to_matrix(*matrix_to_euler(R)), R, atol=1e-10))
        # uniform on SO(3): projection directions (3rd row) uniform on the sphere
        d = R[:, 2, :]
        self.assertTrue(np.all(np.abs(d.mean(0)) < 0.02))
        self.assertTrue(np.allclose((d ** 2).mean(0), 1 / 3, atol=0.01))
        for tilt0 in (0.0, 180.0):  # gimbal-lock cases
            R0 = euler_to_matrix(30, tilt0, 20)
            self.assertTrue(np.allclose(euler_to_matrix(*matrix_to_euler(R0)), R0, atol=1e-12),
                            tilt0)

    def test_fourier_slice_matches_direct_dft(self):
        n = 20
        vol = smooth_volume(n)
        rng = np.random.default_rng(5)
        R = euler_to_matrix(*uniform_rotations(3, rng))
        got = S.fourier_slices(vol, R)
        c = n // 2
        r = np.arange(n) - c
        Z, Y, X = np.meshgrid(r, r, r, indexing="ij")
        KY, KX = frequency_axes(n, 2)  # exact integers (fftfreq * n misplaces |k| = n/2)
        inside = KX ** 2 + KY ** 2 <= (n / 2) ** 2
        errs = []
        for i in range(len(R)):
            k2 = np.stack([KX[inside], KY[inside], np.zeros(inside.sum())], 1)
            f = k2 @ R[i]  # rows are R^T (kx, ky, 0): 3D frequencies (x, y, z)
            phase = np.exp(-2j * np.pi * (np.outer(f[:, 0], X.ravel())
                                          + np.outer(f[:, 1], Y.ravel())
                                          + np.outer(f[:, 2], Z.ravel())) / n)
            ref = phase @ vol.ravel()
            errs.append(np.linalg.norm(got[i][inside] - ref) / np.linalg.norm(ref))
            self.assertTrue(np.all(got[i][~inside] == 0), i)
        print("slice relative L2 errors", errs)
        self.assertLessEqual(max(errs), 1e-4)

    def test_projection_tilt0_is_sum_along_z(self):
        vol = smooth_volume(24)
        proj = S.project(vol, 0.0, 0.0, 0.0)[0]
        ref = vol.sum(axis=0)
        err = np.linalg.norm(proj - ref) / np.linalg.norm(ref)
        print("tilt-0 projection vs sum along z", err)
        self.assertLess(err, 0.01)

    def test_shift_moves_image_by_minus_origin(self):
        vol = smooth_volume(24)
        base = S.project(vol, 10, 50, 80)[0]
        moved = S.project(vol, 10, 50, 80, shifts_A=[[6.0, -4.0]], pixel_size=2.0)[0]
        # origin (3, -2) px: the image is the projection translated by (-3, +2) px (x, y)
        self.assertTrue(np.allclose(moved, np.roll(base, (2, -3), axis=(0, 1)),
                                    atol=1e-4 * abs(base).max()))


# ----------------------------------------------------------------------------- CTF
class TestCTF(unittest.TestCase):
    def test_ctf_zeros_where_formula_says(self):
        # Cs = 0 and no amplitude contrast: CTF = sin(pi lambda D s^2), zeros at s^2 = m/(lambda D)
        lam = S.electron_wavelength(300)
        self.assertLess(abs(lam - 0.019687), 1e-5)
        D = 15000.0
        s1 = np.sqrt(1.0 / (lam * D))
        n, k = 128, 20  # choose the pixel so that sample k along x lies exactly on the zero
        px = k / (n * s1)
        ctf = S.ctf_2d(n, px, D, D, 0.0, cs=0.0, amp_contrast=0.0)
        self.assertTrue(abs(ctf[0, k]) < 1e-9 and abs(ctf[k, 0]) < 1e-9)
        # sign change through the zero
        self.assertTrue(ctf[0, k - 1] > 0.05 and ctf[0, k + 1] < -0.05)
        # with Cs and amplitude contrast, ctf_zeros() solves RELION's chi; check on a dense axis
        z = S.ctf_zeros(D, voltage=300, cs=2.7, amp_contrast=0.1, count=3)
        n, px = 512, 1.0
        axis = S.ctf_2d(n, px, D, D, 0.0)[0]
        s = np.fft.rfftfreq(n) / px
        for zero in z:
            i = np.searchsorted(s, zero)
            self.assertNotEqual(np.sign(axis[i - 1]), np.sign(axis[i]), zero)
        # RELION's sign: positive at low frequency, = amplitude contrast at k = 0
        self.assertTrue(np.isclose(S.ctf_2d(64, 2.0, 20000, 20000, 0)[0, 0], 0.1))

    def test_ctf_astigmatism_direction_and_layouts(self):
        lam = S.electron_wavelength(300)
        U, V, n, px = 20000.0, 10000.0, 256, 1.0
        half = S.ctf_2d(n, px, U, V, 45.0, layout="rfft")
        full = S.ctf_2d(n, px, U, V, 45.0, layout="fft")
        self.assertTrue(full.shape == (n, n) and half.shape == (n, n // 2 + 1))
        # same values except the Nyquist column (kx = +N/2 in rfft, -N/2 in fft order)
        self.assertTrue(np.allclose(full[:, :n // 2], half[:, :n // 2]))
        self.assertTrue(np.allclose(S.ctf_2d(n, px, [U, V], [V, U], [45.0, 10.0])[0], half))

        def expected(D, s):  # Cs = 0, Q0 = 0: CTF = sin(pi lambda D s^2)
            return np.sin(np.pi * lam * D * s ** 2)

        k = 30
        s_axis, s_diag = k / (n * px), np.sqrt(2) * k / (n * px)
        flat = dict(cs=0.0, amp_contrast=0.0, layout="fft")
        # rlnDefocusAngle 0: defocus U along x, V along y
        c0 = S.ctf_2d(n, px, U, V, 0.0, **flat)
        self.assertTrue(np.isclose(c0[0, k], expected(U, s_axis))
                        and np.isclose(c0[k, 0], expected(V, s_axis)))
        # angle 45: U along the (x=y) diagonal, V along (x=-y)
        c45 = S.ctf_2d(n, px, U, V, 45.0, **flat)
        self.assertTrue(np.isclose(c45[k, k], expected(U, s_diag)))
        self.assertTrue(np.isclose(c45[-k, k], expected(V, s_diag)))


# ----------------------------------------------------------------------------- SNR
class TestSNR(_WithGroundTruth):
    def test_snr_target_and_reproducibility(self):
        ground_truth = self.ground_truth
        a = S.simulate_particles(ground_truth, PX, 200, snr=0.05, max_shift_A=3.0, seed=11)
        print("SNR requested 0.05, measured", a.snr_measured)
        self.assertLess(abs(a.snr_measured - 0.05) / 0.05, 0.10)
        b = S.simulate_particles(ground_truth, PX, 200, snr=0.05, max_shift_A=3.0, seed=11)
        self.assertTrue(np.array_equal(a.images, b.images) and np.array_equal(a.rot, b.rot))
        c = S.simulate_particles(ground_truth, PX, 200, snr=0.05, max_shift_A=3.0, seed=12)
        self.assertFalse(np.allclose(a.images, c.images))
        self.assertTrue(a.images.shape == (200, BOX, BOX) and a.images.dtype == np.float32)
        self.assertTrue(np.all(np.abs(a.shift_x_A) <= 3.0) and np.all(a.defocus_u == 0)
                        and a.ctf is None)
        # noise actually added: images minus the clean projections
        clean = S.project(ground_truth, a.rot, a.tilt, a.psi,
                          np.stack([a.shift_x_A, a.shift_y_A], 1), PX)
        noise = a.images - clean
        self.assertLess(abs(noise.std() - a.noise_sigma) / a.noise_sigma, 0.01)
        measured = clean.var(axis=(1, 2)).mean() / noise.var()
        self.assertLess(abs(measured - a.snr_measured) / a.snr_measured, 1e-3)

    def test_snr_scale_mode_and_helpers(self):
        ground_truth = self.ground_truth
        ctf = dict(defocus_min_A=12000.0, defocus_max_A=20000.0)
        scale = 0.9  # about SNR 0.05 for this map with CTF
        expected = S.snr_for_scale(ground_truth, PX, scale, ctf=ctf, n=200, seed=1)
        sim = S.simulate_particles(ground_truth, PX, 300, scale=scale, ctf=ctf, seed=2)
        print("scale", scale, "SNR expected", expected, "measured", sim.snr_measured)
        self.assertTrue(sim.noise_sigma == 1.0 and sim.scale == scale
                        and sim.snr_requested is None)
        self.assertLess(abs(sim.snr_measured - expected) / expected, 0.10)
        back = S.scale_for_snr(ground_truth, PX, expected, ctf=ctf, n=200, seed=1)
        self.assertTrue(np.isclose(back, scale), back)
        self.assertTrue(sim.ctf["defocus_min_A"] == 12000.0 and sim.ctf["voltage"] == 300.0)
        self.assertTrue(np.all((sim.defocus_u + sim.defocus_v) / 2 >= 12000.0))
        with self.assertRaisesRegex(ValueError, "exactly one"):
            S.simulate_particles(ground_truth, PX, 10, snr=0.1, scale=0.1)
        with self.assertRaisesRegex(ValueError, "exactly one"):
            S.simulate_particles(ground_truth, PX, 10)


# ----------------------------------------------------------------------------- STAR
class TestStar(_WithGroundTruth):
    def test_star_roundtrip(self):
        tmp = _tmp_dir(self)
        sim = S.simulate_particles(self.ground_truth, PX, 12, snr=1.0, ctf=True, max_shift_A=4.0,
                                   seed=4)
        star = P.write_particles(sim, PX, tmp, name="parts")
        with open(star) as fh:
            text = fh.read()
        self.assertTrue("# version 30001" in text and "data_optics" in text
                        and "data_particles" in text)
        self.assertIn("000001@parts.mrcs", text)
        back = P.read_particles(star)
        for key in ("rot", "tilt", "psi", "shift_x_A", "shift_y_A", "defocus_u", "defocus_v",
                    "defocus_angle"):
            self.assertTrue(np.allclose(back[key], getattr(sim, key), atol=1e-5), key)
        self.assertTrue(back["pixel_size"] == PX and back["box"] == BOX)
        with mrcfile.open(os.path.join(tmp, "parts.mrcs"), permissive=True) as mrc:
            self.assertEqual(mrc.data.shape, (12, BOX, BOX))
            self.assertTrue(np.isclose(float(mrc.voxel_size.x), PX))
            self.assertTrue(np.array_equal(mrc.data, sim.images))


# ----------------------------------------------------------------------------- RELION
class TestRelionConventions(_WithGroundTruth):
    def _relion_reconstruct(self, folder, with_ctf):
        cmd = ["relion_reconstruct", "--i", "particles.star", "--o", "rec.mrc", "--angpix",
               str(PX)]
        if with_ctf:
            cmd.append("--ctf")
        res = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300)
        self.assertEqual(res.returncode, 0, res.stdout[-2000:] + res.stderr[-2000:])
        rec, _ = read_map(os.path.join(folder, "rec.mrc"))
        return rec

    @unittest.skipIf(shutil.which("relion_project") is None, "RELION not installed")
    def test_projection_ctf_shift_match_relion_project(self):
        tmp = _tmp_dir(self)
        ground_truth = self.ground_truth
        write_map(os.path.join(tmp, "vol.mrc"), ground_truth, PX)
        sim = S.simulate_particles(ground_truth, PX, 4, snr=1e8, ctf=True, max_shift_A=6.0,
                                   seed=2)
        # strong astigmatism so that a wrong angle convention would show
        sim.defocus_u = np.array([15000.0, 20000.0, 12000.0, 18000.0])
        sim.defocus_v = np.array([8000.0, 12000.0, 11000.0, 9000.0])
        sim.defocus_angle = np.array([30.0, 100.0, 0.0, 160.0])
        P.write_particles(sim, PX, tmp, name="p")
        res = subprocess.run(["relion_project", "--i", "vol.mrc", "--o", "proj", "--ang",
                              "p.star", "--ctf", "--angpix", str(PX)], cwd=tmp,
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(res.returncode, 0, res.stdout[-2000:] + res.stderr[-2000:])
        ref = mrcfile.read(os.path.join(tmp, "proj.mrcs"))
        R = euler_to_matrix(sim.rot, sim.tilt, sim.psi)
        ft = S.fourier_slices(ground_truth, R)
        ft *= S.shift_phases(BOX, -np.stack([sim.shift_x_A, sim.shift_y_A], 1) / PX)
        ft *= S.ctf_2d(BOX, PX, sim.defocus_u, sim.defocus_v, sim.defocus_angle)
        mine = np.fft.fftshift(np.fft.irfft2(ft, s=(BOX, BOX)), axes=(-2, -1))
        corrs = [correlation(ref[i], mine[i]) for i in range(4)]
        print("correlation with relion_project (CTF, shifts)", corrs)
        self.assertGreater(min(corrs), 0.99)

    @unittest.skipIf(not HAVE_RELION, "relion_reconstruct not installed")
    def test_relion_reconstruct_recovers_volume(self):
        # SNR 1 with 1000 particles: ~0.94 (no CTF) / ~0.98 (CTF); with the shift sign
        # reversed the same data give ~0.5, so the threshold separates the conventions
        ground_truth = self.ground_truth
        for with_ctf in (False, True):
            with self.subTest(with_ctf=with_ctf):
                ctf = dict(defocus_min_A=10000.0, defocus_max_A=20000.0) if with_ctf else None
                sim = S.simulate_particles(ground_truth, PX, 1000, snr=1.0, ctf=ctf,
                                           max_shift_A=6.0, seed=3)
                folder = _tmp_dir(self)
                P.write_particles(sim, PX, folder)
                rec = self._relion_reconstruct(folder, with_ctf)
                c = np.indices(rec.shape) - BOX // 2
                inside = (c ** 2).sum(0) <= (BOX // 2 - 1) ** 2
                plain = correlation(rec, ground_truth)
                masked = correlation(rec[inside], ground_truth[inside])
                print(f"relion_reconstruct ctf={with_ctf}: correlation {plain:.4f}, "
                      f"in sphere {masked:.4f}, SNR measured {sim.snr_measured:.4f}")
                self.assertGreater(plain, 0.9)


if __name__ == "__main__":
    unittest.main()
