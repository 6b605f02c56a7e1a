"""Tests of the simulation core: Fourier slicing, SNR, CTF and the RELION conventions.

Pure numpy/gemmi/finufft; the RELION checks run the real relion_project and
relion_reconstruct binaries and are skipped only when RELION is not installed.
"""
import os
import shutil
import subprocess

import mrcfile
import numpy as np

from redprior.core.io.shipped import DEMO_MODEL
from redprior.core.fourier.grid import frequency_axes
from redprior.core.geometry.euler import euler_to_matrix, matrix_to_euler, uniform_rotations
import pytest

from redprior.core.io import star_particles as P
from redprior.core.simulation import particles as S
from redprior.core.simulation import structure as T
from redprior.core.fourier.filters import lowpass
from redprior.core.fourier.fsc import correlation
from redprior.core.io.mrc import read_map, write_map

HAVE_RELION = shutil.which("relion_reconstruct") is not None
PX = 3.0
BOX = 40


@pytest.fixture(scope="module")
def ground_truth():
    return T.potential_map(DEMO_MODEL, BOX, PX)


def smooth_volume(n=20, seed=1):
    rng = np.random.default_rng(seed)
    vol = lowpass(rng.standard_normal((n, n, n)).astype(np.float32), 1.0, 5.0)
    return vol.astype(np.float64)


# ----------------------------------------------------------------------------- model
def test_demo_model_summary():
    st = T.read_structure(DEMO_MODEL)
    info = T.structure_summary(st)
    assert info["chains"] == 2
    assert info["atoms"] == 5785
    assert 70 < info["mass_kda"] < 80
    assert 40 < info["max_radius_A"] < 55
    assert os.path.getsize(DEMO_MODEL) < 1_000_000


def test_potential_map_centre_and_shape(ground_truth):
    vol = ground_truth
    assert vol.shape == (BOX, BOX, BOX) and vol.dtype == np.float32
    w = np.clip(vol, 0, None)
    idx = np.indices(vol.shape).reshape(3, -1)
    com = (idx * w.ravel()).sum(1) / w.sum()
    # centre of mass of the (positive) potential at voxel box//2 in z, y and x
    assert np.all(np.abs(com - BOX // 2) < 0.5), com


def test_model_does_not_fit_in_box():
    with pytest.raises(ValueError) as err:
        T.potential_map(DEMO_MODEL, 24, PX)
    msg = str(err.value)
    assert "does not fit" in msg and "at least 36" in msg


def test_unreadable_model(tmp_path):
    bad = tmp_path / "bad.pdb"
    bad.write_text("this is not a model\n")
    with pytest.raises(ValueError, match="bad.pdb"):
        T.read_structure(str(bad))
    with pytest.raises(ValueError, match="does not exist"):
        T.read_structure(str(tmp_path / "missing.cif"))


# ----------------------------------------------------------------------------- geometry
def test_euler_roundtrip_and_uniformity():
    rng = np.random.default_rng(0)
    rot, tilt, psi = uniform_rotations(20000, rng)
    R = euler_to_matrix(rot, tilt, psi)
    assert np.allclose(np.einsum("nij,nkj->nik", R, R), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert np.allclose(euler_to_matrix(*matrix_to_euler(R)), R, atol=1e-10)
    # uniform on SO(3): projection directions (3rd row) uniform on the sphere
    d = R[:, 2, :]
    assert np.all(np.abs(d.mean(0)) < 0.02)
    assert np.allclose((d ** 2).mean(0), 1 / 3, atol=0.01)
    for tilt0 in (0.0, 180.0):  # gimbal-lock cases
        R0 = euler_to_matrix(30, tilt0, 20)
        assert np.allclose(euler_to_matrix(*matrix_to_euler(R0)), R0, atol=1e-12)


def test_fourier_slice_matches_direct_dft():
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
        phase = np.exp(-2j * np.pi * (np.outer(f[:, 0], X.ravel()) + np.outer(f[:, 1], Y.ravel())
                                      + np.outer(f[:, 2], Z.ravel())) / n)
        ref = phase @ vol.ravel()
        errs.append(np.linalg.norm(got[i][inside] - ref) / np.linalg.norm(ref))
        assert np.all(got[i][~inside] == 0)
    print("slice relative L2 errors", errs)
    assert max(errs) <= 1e-4


def test_projection_tilt0_is_sum_along_z():
    vol = smooth_volume(24)
    proj = S.project(vol, 0.0, 0.0, 0.0)[0]
    ref = vol.sum(axis=0)
    err = np.linalg.norm(proj - ref) / np.linalg.norm(ref)
    print("tilt-0 projection vs sum along z", err)
    assert err < 0.01


def test_shift_moves_image_by_minus_origin():
    vol = smooth_volume(24)
    base = S.project(vol, 10, 50, 80)[0]
    moved = S.project(vol, 10, 50, 80, shifts_A=[[6.0, -4.0]], pixel_size=2.0)[0]
    # origin (3, -2) px: the image is the projection translated by (-3, +2) px (x, y)
    assert np.allclose(moved, np.roll(base, (2, -3), axis=(0, 1)), atol=1e-4 * abs(base).max())


# ----------------------------------------------------------------------------- CTF
def test_ctf_zeros_where_formula_says():
    # Cs = 0 and no amplitude contrast: CTF = sin(pi lambda D s^2), zeros at s^2 = m/(lambda D)
    lam = S.electron_wavelength(300)
    assert abs(lam - 0.019687) < 1e-5
    D = 15000.0
    s1 = np.sqrt(1.0 / (lam * D))
    n, k = 128, 20  # choose the pixel so that sample k along x lies exactly on the zero
    px = k / (n * s1)
    ctf = S.ctf_2d(n, px, D, D, 0.0, cs=0.0, amp_contrast=0.0)
    assert abs(ctf[0, k]) < 1e-9 and abs(ctf[k, 0]) < 1e-9
    assert ctf[0, k - 1] > 0.05 and ctf[0, k + 1] < -0.05  # sign change through the zero
    # with Cs and amplitude contrast, ctf_zeros() solves RELION's chi; check on a dense axis
    z = S.ctf_zeros(D, voltage=300, cs=2.7, amp_contrast=0.1, count=3)
    n, px = 512, 1.0
    axis = S.ctf_2d(n, px, D, D, 0.0)[0]
    s = np.fft.rfftfreq(n) / px
    for zero in z:
        i = np.searchsorted(s, zero)
        assert np.sign(axis[i - 1]) != np.sign(axis[i]), zero
    # RELION's sign: positive at low frequency, = amplitude contrast at k = 0
    assert np.isclose(S.ctf_2d(64, 2.0, 20000, 20000, 0)[0, 0], 0.1)


def test_ctf_astigmatism_direction_and_layouts():
    lam = S.electron_wavelength(300)
    U, V, n, px = 20000.0, 10000.0, 256, 1.0
    half = S.ctf_2d(n, px, U, V, 45.0, layout="rfft")
    full = S.ctf_2d(n, px, U, V, 45.0, layout="fft")
    assert full.shape == (n, n) and half.shape == (n, n // 2 + 1)
    # same values except the Nyquist column (kx = +N/2 in rfft, -N/2 in fft order)
    assert np.allclose(full[:, :n // 2], half[:, :n // 2])
    assert np.allclose(S.ctf_2d(n, px, [U, V], [V, U], [45.0, 10.0])[0], half)

    def expected(D, s):  # Cs = 0, Q0 = 0: CTF = sin(pi lambda D s^2)
        return np.sin(np.pi * lam * D * s ** 2)

    k = 30
    s_axis, s_diag = k / (n * px), np.sqrt(2) * k / (n * px)
    flat = dict(cs=0.0, amp_contrast=0.0, layout="fft")
    # rlnDefocusAngle 0: defocus U along x, V along y
    c0 = S.ctf_2d(n, px, U, V, 0.0, **flat)
    assert np.isclose(c0[0, k], expected(U, s_axis)) and np.isclose(c0[k, 0], expected(V, s_axis))
    # angle 45: U along the (x=y) diagonal, V along (x=-y)
    c45 = S.ctf_2d(n, px, U, V, 45.0, **flat)
    assert np.isclose(c45[k, k], expected(U, s_diag))
    assert np.isclose(c45[-k, k], expected(V, s_diag))


# ----------------------------------------------------------------------------- SNR
def test_snr_target_and_reproducibility(ground_truth):
    a = S.simulate_particles(ground_truth, PX, 200, snr=0.05, max_shift_A=3.0, seed=11)
    print("SNR requested 0.05, measured", a.snr_measured)
    assert abs(a.snr_measured - 0.05) / 0.05 < 0.10
    b = S.simulate_particles(ground_truth, PX, 200, snr=0.05, max_shift_A=3.0, seed=11)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.rot, b.rot)
    c = S.simulate_particles(ground_truth, PX, 200, snr=0.05, max_shift_A=3.0, seed=12)
    assert not np.allclose(a.images, c.images)
    assert a.images.shape == (200, BOX, BOX) and a.images.dtype == np.float32
    assert np.all(np.abs(a.shift_x_A) <= 3.0) and np.all(a.defocus_u == 0) and a.ctf is None
    # noise actually added: images minus the clean projections
    clean = S.project(ground_truth, a.rot, a.tilt, a.psi,
                      np.stack([a.shift_x_A, a.shift_y_A], 1), PX)
    noise = a.images - clean
    assert abs(noise.std() - a.noise_sigma) / a.noise_sigma < 0.01
    measured = clean.var(axis=(1, 2)).mean() / noise.var()
    assert abs(measured - a.snr_measured) / a.snr_measured < 1e-3


def test_snr_scale_mode_and_helpers(ground_truth):
    ctf = dict(defocus_min_A=12000.0, defocus_max_A=20000.0)
    scale = 0.9  # about SNR 0.05 for this map with CTF
    expected = S.snr_for_scale(ground_truth, PX, scale, ctf=ctf, n=200, seed=1)
    sim = S.simulate_particles(ground_truth, PX, 300, scale=scale, ctf=ctf, seed=2)
    print("scale", scale, "SNR expected", expected, "measured", sim.snr_measured)
    assert sim.noise_sigma == 1.0 and sim.scale == scale and sim.snr_requested is None
    assert abs(sim.snr_measured - expected) / expected < 0.10
    back = S.scale_for_snr(ground_truth, PX, expected, ctf=ctf, n=200, seed=1)
    assert np.isclose(back, scale)
    assert sim.ctf["defocus_min_A"] == 12000.0 and sim.ctf["voltage"] == 300.0
    assert np.all((sim.defocus_u + sim.defocus_v) / 2 >= 12000.0)
    with pytest.raises(ValueError, match="exactly one"):
        S.simulate_particles(ground_truth, PX, 10, snr=0.1, scale=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        S.simulate_particles(ground_truth, PX, 10)


# ----------------------------------------------------------------------------- STAR
def test_star_roundtrip(tmp_path, ground_truth):
    sim = S.simulate_particles(ground_truth, PX, 12, snr=1.0, ctf=True, max_shift_A=4.0, seed=4)
    star = P.write_particles(sim, PX, str(tmp_path), name="parts")
    text = open(star).read()
    assert "# version 30001" in text and "data_optics" in text and "data_particles" in text
    assert "000001@parts.mrcs" in text
    back = P.read_particles(star)
    for key in ("rot", "tilt", "psi", "shift_x_A", "shift_y_A", "defocus_u", "defocus_v",
                "defocus_angle"):
        assert np.allclose(back[key], getattr(sim, key), atol=1e-5), key
    assert back["pixel_size"] == PX and back["box"] == BOX
    with mrcfile.open(str(tmp_path / "parts.mrcs"), permissive=True) as mrc:
        assert mrc.data.shape == (12, BOX, BOX)
        assert np.isclose(float(mrc.voxel_size.x), PX)
        assert np.array_equal(mrc.data, sim.images)


# ----------------------------------------------------------------------------- RELION
def _relion_reconstruct(folder, with_ctf):
    cmd = ["relion_reconstruct", "--i", "particles.star", "--o", "rec.mrc", "--angpix", str(PX)]
    if with_ctf:
        cmd.append("--ctf")
    res = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rec, _ = read_map(os.path.join(folder, "rec.mrc"))
    return rec


@pytest.mark.skipif(shutil.which("relion_project") is None, reason="RELION not installed")
def test_projection_ctf_shift_match_relion_project(tmp_path, ground_truth):
    write_map(str(tmp_path / "vol.mrc"), ground_truth, PX)
    sim = S.simulate_particles(ground_truth, PX, 4, snr=1e8, ctf=True, max_shift_A=6.0, seed=2)
    # strong astigmatism so that a wrong angle convention would show
    sim.defocus_u = np.array([15000.0, 20000.0, 12000.0, 18000.0])
    sim.defocus_v = np.array([8000.0, 12000.0, 11000.0, 9000.0])
    sim.defocus_angle = np.array([30.0, 100.0, 0.0, 160.0])
    P.write_particles(sim, PX, str(tmp_path), name="p")
    res = subprocess.run(["relion_project", "--i", "vol.mrc", "--o", "proj", "--ang", "p.star",
                          "--ctf", "--angpix", str(PX)], cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    ref = mrcfile.read(str(tmp_path / "proj.mrcs"))
    R = euler_to_matrix(sim.rot, sim.tilt, sim.psi)
    ft = S.fourier_slices(ground_truth, R)
    ft *= S.shift_phases(BOX, -np.stack([sim.shift_x_A, sim.shift_y_A], 1) / PX)
    ft *= S.ctf_2d(BOX, PX, sim.defocus_u, sim.defocus_v, sim.defocus_angle)
    mine = np.fft.fftshift(np.fft.irfft2(ft, s=(BOX, BOX)), axes=(-2, -1))
    corrs = [correlation(ref[i], mine[i]) for i in range(4)]
    print("correlation with relion_project (CTF, shifts)", corrs)
    assert min(corrs) > 0.99


@pytest.mark.skipif(not HAVE_RELION, reason="relion_reconstruct not installed")
@pytest.mark.parametrize("with_ctf", [False, True])
def test_relion_reconstruct_recovers_volume(tmp_path, ground_truth, with_ctf):
    # SNR 1 with 1000 particles: ~0.94 (no CTF) / ~0.98 (CTF); with the shift sign
    # reversed the same data give ~0.5, so the threshold separates the conventions
    ctf = dict(defocus_min_A=10000.0, defocus_max_A=20000.0) if with_ctf else None
    sim = S.simulate_particles(ground_truth, PX, 1000, snr=1.0, ctf=ctf, max_shift_A=6.0,
                               seed=3)
    folder = str(tmp_path)
    P.write_particles(sim, PX, folder)
    rec = _relion_reconstruct(folder, with_ctf)
    c = np.indices(rec.shape) - BOX // 2
    inside = (c ** 2).sum(0) <= (BOX // 2 - 1) ** 2
    plain = correlation(rec, ground_truth)
    masked = correlation(rec[inside], ground_truth[inside])
    print(f"relion_reconstruct ctf={with_ctf}: correlation {plain:.4f}, in sphere {masked:.4f}, "
          f"SNR measured {sim.snr_measured:.4f}")
    assert plain > 0.9
