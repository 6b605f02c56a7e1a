"""Our external-reconstruct program against RELION's own reconstruction (real RELION 3.1).

A short relion_refine run (2 iterations) calls our program in Gaussian mode with --keep, so
RELION's B, K and STAR files of every call stay on disk; each is then reconstructed by
relion_external_reconstruct (RELION's code) and by our program with lambda = 0, through both
of its reconstructions (RELION's program on our inputs, core.relion.program, and the numpy
re-implementation, core.relion.reconstruct).
"""
import contextlib
import glob
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import pytest

from redprior.core.denoiser.views import quarter_turn
from redprior.core.io.shipped import DEMO_MODEL
from redprior.core.prior import schedule
from redprior.core.prior.exrecon import main as exrecon_main
from redprior.core.prior.history import read_log
from redprior.core.fourier.fsc import correlation
from redprior.core.io.mrc import read_map, write_map
from redprior.core.io import star_particles as particles_star
from redprior.core.simulation import particles as simulate
from redprior.core.simulation import structure
from redprior.core.fourier import filters as fourier

NO_RELION = shutil.which("relion_refine") is None
NO_RELION_REASON = "RELION is not installed (apt-get install relion)"

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOX, PIX = 40, 3.0


def make_dataset(folder):
    """300 simulated particles of the demo model and a 30 A low-pass reference in `folder`."""
    gt = structure.potential_map(DEMO_MODEL, BOX, PIX)
    sim = simulate.simulate_particles(gt, PIX, 300, snr=0.3, seed=3)
    particles_star.write_particles(sim, PIX, str(folder))
    write_map(str(folder / "ref.mrc"), fourier.lowpass(gt, PIX, 30.0), PIX)
    return folder


def _run_refine(folder, pad, hook=True):
    """2 iterations of relion_refine, with our program in Gaussian mode (folder padN) or,
    hook=False, with RELION's internal reconstruction (folder internalN); same seed."""
    out = folder / (f"pad{pad}" if hook else f"internal{pad}")
    out.mkdir()
    program = (f"{sys.executable} {REPO}/redprior_exrecon.py --mode gaussian --keep "
               f"--log {out}/log.jsonl")
    env = dict(os.environ, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=program)
    cmd = ["relion_refine", "--o", f"{out.name}/run", "--i", "particles.star", "--ref",
           "ref.mrc", "--iter", "2", "--K", "1", "--tau2_fudge", "2", "--ini_high", "30",
           "--particle_diameter", "110", "--flatten_solvent", "--zero_mask", "--oversampling",
           "1", "--healpix_order", "1", "--offset_range", "2", "--offset_step", "1", "--sym",
           "C1", "--norm", "--scale", "--j", "1", "--pad", str(pad), "--random_seed", "1",
           "--dont_combine_weights_via_disc", "--preread_images"]
    cmd += ["--external_reconstruct"] if hook else []
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def _shell_amplitude(vol):
    """The Fourier amplitude of a BOX^3 map per shell 0..BOX/2 (root of the summed power)."""
    from redprior.core.fourier.grid import shell_index

    power = np.abs(np.fft.rfftn(vol)).ravel() ** 2
    return np.sqrt(np.bincount(shell_index(BOX).ravel(), power, BOX)[:BOX // 2 + 1])


def _with_fsc(star, new_star, last_shell):
    """A copy of RELION's STAR whose FSC is 0.9 up to last_shell and 0.05 beyond."""
    with open(star) as fh:
        text = fh.read()
    lines, loop = [], False
    for line in text.splitlines():
        parts = line.split()
        if loop and len(parts) == 3 and parts[0].isdigit():
            parts[2] = "0.9" if int(parts[0]) <= last_shell else "0.05"
            line = " ".join(parts)
        loop = loop or line.startswith("_rlnGoldStandardFsc")
        lines.append(line)
    with open(new_star, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return new_star


@unittest.skipIf(NO_RELION, NO_RELION_REASON)
class TestCwredSchedule(unittest.TestCase):
    def test_cwred_schedule(self):
        assert schedule.cwred_lambda(12.0) == 0.0
        assert schedule.cwred_lambda(10.0) == 0.0
        assert schedule.cwred_lambda(4.5) == 1.0
        assert schedule.cwred_lambda(3.0) == 1.0
        # pytest.approx(0.5): relative tolerance 1e-6
        self.assertAlmostEqual(schedule.cwred_lambda(7.25), 0.5, delta=1e-6 * 0.5)
        assert schedule.schedule_lambda("gaussian", 3.0) == 0.0
        assert schedule.schedule_lambda("red", 30.0, red_lambda=0.7) == 0.7

    def test_resolution_cap(self):
        cap = schedule.resolution_cap(5, 12)
        np.testing.assert_allclose(cap[:6], 1.0)
        # raised cosine over CAP_EDGE_SHELLS = 2 shells: cos^2(pi/6), cos^2(pi/3)
        np.testing.assert_allclose(cap[6:8], [0.75, 0.25], atol=1e-12)
        np.testing.assert_allclose(cap[8:], 0.0)
        # a resolution at the box's edge keeps every shell; shell 0 keeps only the origin
        np.testing.assert_allclose(schedule.resolution_cap(11, 12), 1.0)
        np.testing.assert_allclose(schedule.resolution_cap(0, 12)[:4], [1.0, 0.75, 0.25, 0.0],
                                   atol=1e-12)
        # a fixed limit: the last shell at or coarser than it (box 40 at 3 A: shell 6 is 20 A,
        # shell 15 is 8 A, so 7.9 A keeps shell 15 and 8.1 A stops at 14)
        np.testing.assert_array_equal(schedule.fixed_cap(20.0, 40, 3.0),
                                      schedule.resolution_cap(6, 40))
        self.assertEqual(int(np.sum(schedule.fixed_cap(7.9, 40, 3.0) == 1.0)), 16)
        self.assertEqual(int(np.sum(schedule.fixed_cap(8.1, 40, 3.0) == 1.0)), 15)


@unittest.skipIf(NO_RELION, NO_RELION_REASON)
class TestExreconWithRelion(unittest.TestCase):
    """Real relion_refine runs on one simulated data set, made once for the class; each run
    writes its own sub-folder of it (pad1, pad2, internal2, cont, killed, plain, hook)."""

    @classmethod
    def setUpClass(cls):
        folder = tempfile.mkdtemp(prefix="redprior_exrecon_")
        cls.addClassCleanup(shutil.rmtree, folder, ignore_errors=True)
        cls.dataset = make_dataset(pathlib.Path(folder))
        cls._pad_runs = {}

    @classmethod
    def pad_run(cls, pad):
        """The 2-iteration Gaussian-mode refinement with --pad `pad` (its folder), run on the
        first call only: test_lambda0_reproduces_relion checks it, and
        test_program_errors_are_readable needs its STAR files, in whatever order they run."""
        if pad not in cls._pad_runs:
            try:
                cls._pad_runs[pad] = _run_refine(cls.dataset, pad)
            except Exception as exc:
                cls._pad_runs[pad] = exc
                raise
        got = cls._pad_runs[pad]
        if isinstance(got, Exception):
            raise AssertionError(f"relion_refine --pad {pad} failed (first call): {got}")
        return got

    def chdir(self, folder):
        old = os.getcwd()
        os.chdir(folder)
        self.addCleanup(os.chdir, old)

    def test_lambda0_reproduces_relion(self):
        dataset = self.dataset
        for pad in (1, 2):
            with self.subTest(pad=pad):
                out = self.pad_run(pad)
                self.chdir(dataset)  # RELION runs the program from its working directory
                stars = sorted(glob.glob(str(out / "run_it*_external_reconstruct.star")))
                assert len(stars) == 2, stars  # one call per iteration (no split halves)
                records = read_log(str(out / "log.jsonl"))
                assert [r["iteration"] for r in records] == [1, 2]
                assert all(r["lambda"] == 0.0 for r in records)
                for star in stars:
                    ref = str(out / "relion.mrc")
                    subprocess.run(["relion_external_reconstruct",
                                    os.path.relpath(star, dataset), "--o", ref],
                                   cwd=dataset, check=True, capture_output=True)
                    a, _ = read_map(ref)
                    for how in ("relion", "numpy"):
                        mine = str(out / f"ours_{how}.mrc")
                        # relion_external_reconstruct puts the prior on every shell:
                        # --minres-map -1 as well.
                        rc = exrecon_main([os.path.relpath(star, dataset), "--keep",
                                           "--minres-map", "-1", "--reconstruction", how,
                                           "--o", mine])
                        assert rc == 0
                        b, _ = read_map(mine)
                        rel = float(np.sqrt(np.mean((b - a) ** 2) / np.mean(a ** 2)))
                        # measured: 0 (RELION's program) and ~5e-11 (numpy) at box 40-64
                        assert rel < 1e-8, f"{os.path.basename(star)} pad {pad} {how}: {rel}"

    def test_lambda0_refinement_is_relions_own(self):
        """The same 2 iterations with RELION's internal reconstruction and with our program at
        lambda 0: every iteration's map equal to float32 precision (the hook's files are
        single-precision MRC, relion_refine reconstructs in double; measured 2e-8 and 2e-7)
        and every particle's pose the same, so the E-step saw the same reference."""
        hooked = self.pad_run(2)
        internal = _run_refine(self.dataset, 2, hook=False)
        assert not glob.glob(str(internal / "*external_reconstruct*"))  # RELION's own path
        for it in (1, 2):
            a, _ = read_map(str(internal / f"run_it00{it}_class001.mrc"))
            b, _ = read_map(str(hooked / f"run_it00{it}_class001.mrc"))
            rel = float(np.sqrt(np.mean((b - a) ** 2) / np.mean(a ** 2)))
            assert rel < 1e-6, f"iteration {it}: relative difference {rel}"
        p = particles_star.read_particles(str(internal / "run_it002_data.star"))
        q = particles_star.read_particles(str(hooked / "run_it002_data.star"))
        for key in ("rot", "tilt", "psi", "shift_x_A", "shift_y_A"):
            np.testing.assert_array_equal(p[key], q[key], err_msg=key)

    def test_red_update_is_the_same_by_relion_and_by_numpy(self):
        """Update (17) with lambda 1 and relion_refine's minres_map 5: RELION's program on
        B' = B + F[f(x~)]/tau' equals the numpy update (measured 8e-8: B' is single
        precision, as RELION's files are), and the prior changed the map."""
        from redprior.tests.placeholder_model import write_placeholder_model

        out = self.pad_run(2)
        self.chdir(self.dataset)
        star = os.path.relpath(sorted(glob.glob(str(out / "run_it002*_external_reconstruct.star")))[0],
                               self.dataset)
        model = write_placeholder_model(str(out / "smooth.keras"), BOX, PIX)
        maps = {}
        for how, mode in (("relion", "red"), ("numpy", "red"), ("relion", "gaussian")):
            name = str(out / f"{mode}_{how}.mrc")
            args = [star, "--keep", "--mode", mode, "--angpix", str(PIX),
                    "--reconstruction", how, "--o", name]
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(exrecon_main(args + (["--model", model]
                                                      if mode == "red" else [])), 0)
            maps[mode, how] = read_map(name)[0]
        a, b = maps["red", "relion"], maps["red", "numpy"]
        rel = float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)))
        self.assertLess(rel, 1e-5)
        g = maps["gaussian", "relion"]
        changed = float(np.sqrt(np.mean((a - g) ** 2) / np.mean(g ** 2)))
        self.assertGreater(changed, 1e-2)  # the prior acted (0.22 at box 64)

    def test_direct_denoiser_input_is_the_gridded_one(self):
        """x~ by direct division (--denoiser-input direct, the default: one inverse FFT) is close
        to RELION's gridded x~ (relion_external_reconstruct --no_map) on a real call, the RED
        update RELION gets back hardly depends on which one the denoiser saw, and --record
        saves the one that ran (the log says which)."""
        from redprior.core.fourier.fsc import fsc
        from redprior.core.relion.contract import load_fourier, read_job
        from redprior.core.relion.program import RelionProgram
        from redprior.core.relion.reconstruct import direct_map
        from redprior.tests.placeholder_model import write_placeholder_model

        out = self.pad_run(2)
        self.chdir(self.dataset)
        star = os.path.relpath(sorted(glob.glob(str(out / "run_it002*_external_reconstruct.star")))[0],
                               self.dataset)
        job = read_job(star)
        with RelionProgram(job, 5) as program:
            gridded = program.unregularised_map()
        b, k = load_fourier(job, np.float32)
        direct = direct_map(job, b, k)
        rel = float(np.sqrt(np.mean((direct - gridded) ** 2) / np.mean(gridded ** 2)))
        # measured here (300 particles: a sparse K): 15 % RMS, cc 0.989; 7 % on 2000 particles
        # of 3ENL at iteration 8 of an auto-refine
        self.assertLess(rel, 0.3)
        self.assertGreater(correlation(direct, gridded), 0.98)
        b64, k64 = load_fourier(job)
        np.testing.assert_allclose(direct_map(job, b64, k64), direct, rtol=0,
                                   atol=1e-4 * float(np.abs(direct).max()))
        model = write_placeholder_model(str(out / "inp.keras"), BOX, PIX)
        maps = {}
        for how in ("direct", "gridded"):
            log = str(out / f"input_{how}.jsonl")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(exrecon_main([star, "--keep", "--record", str(out / how),
                                               "--denoiser-input", how, "--log", log,
                                               "--o", str(out / f"input_{how}.mrc")]), 0)
            self.assertEqual(read_log(log)[0]["denoiser_input"], how)
            saved, _ = read_map(str(out / how / "it002_half0_unreg.mrc"))
            red = str(out / f"red_{how}.mrc")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(exrecon_main([star, "--keep", "--mode", "red", "--model", model,
                                               "--angpix", str(PIX), "--denoiser-input", how,
                                               "--o", red]), 0)
            maps[how] = read_map(red)[0]
            np.testing.assert_allclose(saved, direct if how == "direct" else gridded,
                                       atol=1e-5 * float(np.abs(gridded).max()))
        # what RELION gets back, the RED update, hardly depends on it (measured 0.8 % RMS,
        # cc 0.99996), and is as close to the truth (mean FSC 0.685 direct, 0.687 gridded)
        a, g = maps["direct"], maps["gridded"]
        self.assertLess(float(np.sqrt(np.mean((a - g) ** 2) / np.mean(g ** 2))), 0.03)
        gt = structure.potential_map(DEMO_MODEL, BOX, PIX)
        r_max = read_log(log)[0]["current_size"] // 2
        to_truth = [fsc(m, gt)[1:r_max + 1].mean() for m in (a, g)]
        self.assertLess(abs(to_truth[0] - to_truth[1]), 0.01)

    def test_cap_keeps_the_prior_out_beyond_the_resolution(self):
        """--cap-at-resolution: the RED update equals RELION's own (Gaussian) beyond the
        current resolution's shell plus the edge, and still differs from it below."""
        from redprior.tests.placeholder_model import write_placeholder_model

        out = self.pad_run(2)
        self.chdir(self.dataset)
        star = os.path.relpath(sorted(glob.glob(str(out / "run_it002*_external_reconstruct.star")))[0],
                               self.dataset)
        model = write_placeholder_model(str(out / "cap.keras"), BOX, PIX)
        # RELION's FSC of a 2-iteration run without halves is all 0: give the call a curve
        # that crosses 0.143 after shell 6 (resolution 3 A * 40 / 6 = 20 A)
        job_star = _with_fsc(star, str(out / "cap.star"), 6)
        maps = {}
        for name, extra in (("gaussian", ["--mode", "gaussian"]),
                            ("red", ["--mode", "red", "--model", model]),
                            # the same shell fixed: 40 px * 3 A / 20 A = shell 6
                            ("fixed", ["--mode", "red", "--model", model, "--prior-up-to", "20"]),
                            ("capped", ["--mode", "red", "--model", model, "--cap-at-resolution"])):
            log = str(out / f"cap_{name}.jsonl")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(exrecon_main([job_star, "--keep", "--angpix", str(PIX),
                                               "--log", log, "--o", str(out / f"cap_{name}.mrc")]
                                              + extra), 0)
            maps[name] = read_map(str(out / f"cap_{name}.mrc"))[0]
        self.assertEqual(read_log(log)[0]["cap_shell"], 6)
        self.assertEqual(read_log(str(out / "cap_fixed.jsonl"))[0]["prior_up_to"], 20.0)
        # a fixed limit at the current resolution's shell is the same update
        np.testing.assert_allclose(maps["fixed"], maps["capped"], rtol=0, atol=1e-6)
        # what the prior changed, per shell: |F(capped - gaussian)| / |F(red - gaussian)|

        ratio = (_shell_amplitude(maps["capped"] - maps["gaussian"])
                 / _shell_amplitude(maps["red"] - maps["gaussian"]))
        r_max = read_log(log)[0]["current_size"] // 2
        # measured: 1.0 at shells 5-6, 0.72 and 0.31 on the edge (lambda 0.75, 0.25), 0.10-0.14
        # beyond: what the real-space window of the padded box leaks from the shells below
        self.assertGreater(ratio[5:7].min(), 0.9)
        beyond = ratio[6 + schedule.CAP_EDGE_SHELLS + 1:r_max + 1]
        self.assertLess(beyond.max(), 0.2)

    def test_lowpass_reference_cuts_a_half_map_at_the_resolution(self):
        """--lowpass-reference on a real half-1 call: the map RELION gets back is the RED map
        up to the current resolution's shell, nothing beyond its edge (data and prior alike);
        the final joined call is left whole."""
        from redprior.tests.placeholder_model import write_placeholder_model

        out = self.pad_run(2)
        self.chdir(self.dataset)
        star = os.path.relpath(sorted(glob.glob(str(out / "run_it002*_external_reconstruct.star")))[0],
                               self.dataset)
        model = write_placeholder_model(str(out / "trail.keras"), BOX, PIX)
        red = ["--keep", "--mode", "red", "--model", model, "--angpix", str(PIX)]
        maps, logs = {}, {}
        # the half comes from the file name, as RELION names it (none: the final joined call)
        for half, name in (("half1", "trail_it002_half1_class001_external_reconstruct.star"),
                           ("joined", "trail_it002_class001_external_reconstruct.star")):
            job_star = _with_fsc(star, str(out / name), 6)  # crosses 0.143 after shell 6
            for trail in ((), ("--lowpass-reference",)):
                key = (half, bool(trail))
                logs[key] = str(out / f"trail_{half}_{bool(trail)}.jsonl")
                with contextlib.redirect_stdout(io.StringIO()):
                    self.assertEqual(exrecon_main([job_star, *red, *trail, "--log", logs[key],
                                                   "--o", str(out / "trail.mrc")]), 0)
                maps[key] = read_map(str(out / "trail.mrc"))[0]

        whole, cut = _shell_amplitude(maps["half1", False]), _shell_amplitude(maps["half1", True])
        np.testing.assert_allclose(cut[:7], whole[:7], rtol=1e-4)
        # the raised-cosine edge (0.75, 0.25 of the amplitude), then nothing
        np.testing.assert_allclose(cut[7:9] / whole[7:9], [0.75, 0.25], atol=1e-3)
        self.assertLess(cut[9:].max(), 1e-5 * whole[1:7].max())
        self.assertGreater(whole[9:].max(), 1e-2 * whole[1:7].max())
        self.assertEqual(read_log(logs["half1", True])[0]["lowpass_shell"], 6)
        self.assertNotIn("lowpass_shell", read_log(logs["joined", True])[0])
        np.testing.assert_array_equal(maps["joined", True], maps["joined", False])

    def test_half_views_rotated_turns_the_frame_back(self):
        """--half-views rotated on a real half-2 call: with a denoiser that does not depend on
        the grid's orientation (the placeholder's isotropic Gaussian) the map RELION gets back
        is the one of the same frame, so the turned result was turned back; the log says which
        frame ran. (That a network's own additions then differ is core.denoiser.views' test.)"""
        from redprior.tests.placeholder_model import write_placeholder_model

        out = self.pad_run(2)
        self.chdir(self.dataset)
        star = os.path.relpath(sorted(glob.glob(str(out / "run_it002*_external_reconstruct.star")))[0],
                               self.dataset)
        half2 = str(out / "views_it002_half2_class001_external_reconstruct.star")
        shutil.copy(star, half2)  # the half comes from the file name, as RELION names it
        model = write_placeholder_model(str(out / "views.keras"), BOX, PIX)
        maps, logs = {}, {}
        for views in ("same", "rotated"):
            logs[views] = str(out / f"views_{views}.jsonl")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(exrecon_main([half2, "--keep", "--mode", "red", "--model", model,
                                               "--angpix", str(PIX), "--half-views", views,
                                               "--log", logs[views],
                                               "--o", str(out / f"views_{views}.mrc")]), 0)
            maps[views] = read_map(str(out / f"views_{views}.mrc"))[0]
        self.assertEqual(read_log(logs["rotated"])[0]["half_views"], "rotated")
        self.assertEqual(read_log(logs["rotated"])[0]["half"], 2)
        self.assertEqual(read_log(logs["same"])[0]["half_views"], "same")
        a, b = maps["same"], maps["rotated"]
        # measured 0.2 % RMS, all of it at the box edge, the only place where the zero-padded
        # convolution sees the turned map differently (inside, the two agree to 2e-7)
        self.assertLess(float(np.sqrt(np.mean((a - b) ** 2) / np.mean(a ** 2))), 0.01)
        # and the map is not symmetric under the turn, so a frame not turned back would show
        self.assertGreater(float(np.sqrt(np.mean((a - quarter_turn(a)) ** 2) / np.mean(a ** 2))),
                           0.1)

    def test_cwred_ramp_defaults_to_the_models_own(self):
        """Without --cw-low / --cw-high the hook uses the ramp in the model's metadata, as the
        refine form does, and logs it; explicit values win."""
        from redprior.core.denoiser.model import update_metadata
        from redprior.tests.placeholder_model import write_placeholder_model

        out = self.pad_run(2)
        self.chdir(self.dataset)
        star = os.path.relpath(sorted(glob.glob(str(out / "run_it002*_external_reconstruct.star")))[0],
                               self.dataset)
        model = write_placeholder_model(str(out / "ramp.keras"), BOX, PIX)
        update_metadata(model, cw_low=20.0, cw_high=10.0)
        job_star = _with_fsc(star, str(out / "ramp.star"), 9)  # 3 A * 40 / 9 = 13.3 A
        got = {}
        for name, extra in (("model's", []), ("paper's", ["--cw-low", "10", "--cw-high", "4.5"])):
            log = str(out / f"ramp_{len(extra)}.jsonl")
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(exrecon_main([job_star, "--keep", "--mode", "cwred", "--model",
                                               model, "--angpix", str(PIX), "--log", log,
                                               "--o", str(out / "ramp.mrc")] + extra), 0)
            got[name] = read_log(log)[0]
        self.assertEqual(got["model's"]["cw_ramp"], [20.0, 10.0])
        self.assertAlmostEqual(got["model's"]["lambda"], (20.0 - 40 * 3.0 / 9) / 10.0, places=6)
        self.assertEqual(got["paper's"]["cw_ramp"], [10.0, 4.5])
        self.assertEqual(got["paper's"]["lambda"], 0.0)
        # where a call's time went: RELION's program, the denoiser (only when lambda > 0)
        prior, none = got["model's"], got["paper's"]
        self.assertGreater(prior["relion_seconds"], 0)
        self.assertGreater(prior["denoiser_seconds"], 0)
        self.assertLessEqual(prior["relion_seconds"] + prior["denoiser_seconds"],
                             prior["seconds"])
        self.assertNotIn("denoiser_seconds", none)
        self.assertLessEqual(none["relion_seconds"], none["seconds"])

    def test_program_errors_are_readable(self):
        dataset = self.dataset
        tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="redprior_missing_"))
        self.addCleanup(shutil.rmtree, tmp_path, ignore_errors=True)
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = exrecon_main([str(tmp_path / "missing_external_reconstruct.star")])
        assert rc == 1
        assert "does not exist" in err.getvalue()
        # --mode red without a model must stop RELION, not silently run without the prior.
        # It needs RELION's files of a real call: those of the --pad 1 run (made here if no
        # other test made them yet).
        # (RELION 3.1 names them run_it001_class001_external_reconstruct.star: the pattern
        # run_it001_external_reconstruct.star matched nothing, and this half never ran.)
        out = self.pad_run(1)
        star = sorted(glob.glob(str(out / "run_it001*_external_reconstruct.star")))
        self.assertTrue(star, "the --pad 1 run left no run_it001*_external_reconstruct.star")
        self.chdir(dataset)
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = exrecon_main([os.path.relpath(star[0], dataset), "--mode", "red", "--keep"])
        assert rc == 1
        assert "needs --model" in err.getvalue()
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = exrecon_main([os.path.relpath(star[0], dataset), "--mode", "red", "--keep",
                               "--model", "any.keras", "--prior-up-to", "-8"])
        assert rc == 1
        assert "--prior-up-to -8: give a resolution in A" in err.getvalue()

    def test_continue_keeps_prior(self):
        """An interrupted refinement continued with --continue still calls the hook with the
        prior."""
        from redprior.tests.placeholder_model import write_placeholder_model
        from redprior.core.relion.run_folder import last_optimiser

        dataset = self.dataset
        out = dataset / "cont"
        out.mkdir()
        model = write_placeholder_model(str(out / "m.keras"), BOX, PIX)
        log = out / "log.jsonl"
        hook = (f"{sys.executable} {REPO}/redprior_exrecon.py --mode red --lambda 0.5 "
                f"--model {model} --angpix {PIX} --log {log}")
        env = dict(os.environ, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook)
        base = ["relion_refine", "--K", "1", "--tau2_fudge", "2", "--particle_diameter", "110",
                "--oversampling", "1", "--healpix_order", "1", "--offset_range", "2",
                "--offset_step", "1", "--j", "1", "--pad", "2", "--external_reconstruct",
                "--dont_combine_weights_via_disc"]
        first = base + ["--o", "cont/run", "--i", "particles.star", "--ref", "ref.mrc",
                        "--iter", "1", "--ini_high", "30", "--sym", "C1", "--norm", "--scale",
                        "--random_seed", "1"]
        proc = subprocess.run(first, cwd=dataset, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        # 'interrupted' after iteration 1: the protocol finds where to continue from
        found = last_optimiser(str(out))
        assert found is not None and found[1] == 1
        cont = base + ["--continue", os.path.relpath(found[0], dataset), "--o", "cont/run_ct1",
                       "--iter", "2"]
        proc = subprocess.run(cont, cwd=dataset, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        records = read_log(str(log))
        assert [r["iteration"] for r in records] == [1, 2]
        assert all(r["lambda"] == 0.5 and r["mode"] == "red" for r in records)

    @pytest.mark.slow
    def test_gaussian_hook_reproduces_plain_relion_refinement(self):
        """Whole auto-refine: plain RELION vs our hook with lambda 0 (slow: two
        refinements)."""
        dataset = self.dataset
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1")
        hook = f"{sys.executable} {REPO}/redprior_exrecon.py --mode gaussian"
        maps, its = {}, {}
        for name, extra in (("plain", []), ("hook", ["--external_reconstruct"])):
            (dataset / name).mkdir()
            cmd = ["mpirun", "-n", "3", "relion_refine_mpi", "--o", f"{name}/run",
                   "--auto_refine", "--split_random_halves", "--i", "particles.star", "--ref",
                   "ref.mrc", "--ini_high", "30", "--particle_diameter", "110",
                   "--flatten_solvent", "--zero_mask", "--oversampling", "1", "--healpix_order",
                   "1", "--auto_local_healpix_order", "3", "--offset_range", "2",
                   "--offset_step", "1", "--sym", "C1", "--low_resol_join_halves", "40",
                   "--norm", "--scale", "--j", "1", "--pad", "2", "--random_seed", "42",
                   "--dont_combine_weights_via_disc", "--preread_images", *extra]
            run_env = dict(env, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook) if extra else env
            proc = subprocess.run(cmd, cwd=dataset, env=run_env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout[-2000:]
            maps[name], _ = read_map(str(dataset / name / "run_class001.mrc"))
            its[name] = len(glob.glob(str(dataset / name / "run_it*_optimiser.star")))
        assert its["plain"] == its["hook"]
        assert correlation(maps["plain"], maps["hook"]) > 0.999

    def test_killed_worker_mid_refinement_keeps_the_prior(self):
        """A real relion_refine run whose denoiser worker is killed after the first M-step: the
        next calls load the model themselves (and say so); lambda stays what was asked for."""
        import time
        from redprior.tests.placeholder_model import write_placeholder_model
        from redprior.core.denoiser.worker import wait_ready

        dataset = self.dataset
        out = dataset / "killed"
        out.mkdir()
        model = write_placeholder_model(str(out / "m.keras"), BOX, PIX)
        sock = str(out / "w.sock")
        worker = subprocess.Popen([sys.executable, "-m", "redprior_worker", "--model", model,
                                   "--socket", sock], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        assert wait_ready(sock, worker, timeout=120)
        log = out / "log.jsonl"
        hook = (f"{sys.executable} {REPO}/redprior_exrecon.py --mode red --lambda 1 "
                f"--model {model} --angpix {PIX} --log {log} --worker {sock}")
        env = dict(os.environ, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook)
        cmd = ["relion_refine", "--o", "killed/run", "--i", "particles.star", "--ref", "ref.mrc",
               "--iter", "3", "--K", "1", "--tau2_fudge", "2", "--ini_high", "30",
               "--particle_diameter", "110", "--oversampling", "1", "--healpix_order", "1",
               "--offset_range", "2", "--offset_step", "1", "--sym", "C1", "--norm", "--scale",
               "--j", "1", "--pad", "2", "--random_seed", "1", "--external_reconstruct",
               "--dont_combine_weights_via_disc", "--preread_images"]
        relion = subprocess.Popen(cmd, cwd=dataset, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        t0 = time.time()
        while not read_log(str(log)) and time.time() - t0 < 600 and relion.poll() is None:
            time.sleep(0.5)
        worker.kill()
        output, _ = relion.communicate(timeout=900)
        assert relion.returncode == 0, output[-2000:]
        records = read_log(str(log))
        assert [r["iteration"] for r in records] == [1, 2, 3]
        assert records[0]["denoiser"] == "worker"
        assert all(r["denoiser"].startswith("in-process") for r in records[1:]), records
        assert all(r["lambda"] == 1.0 for r in records)
        assert "loading the model in this process" in output


@unittest.skipIf(NO_RELION, NO_RELION_REASON)
class TestLambda0AtBox128(unittest.TestCase):
    """lambda = 0 is RELION's reconstruction at a real box too: box 128, pad 2, the whole
    Fourier box filled (initial low-pass 4.2 A, so RELION's current size is 128 at once).

    Compared with relion_external_reconstruct, which puts the prior on every shell, so our
    program runs with --minres-map -1 here; inside a refinement it uses relion_refine's own
    minres_map 5, as relion_refine does (a comparison that mixes the two differs by ~1e-3,
    mostly at low resolution, i.e. near the particle's centre)."""

    def test_identical_to_relion(self):
        folder = tempfile.mkdtemp(prefix="redprior_box128_")
        self.addCleanup(shutil.rmtree, folder, True)
        box, pix = 128, 2.0
        gt = structure.potential_map(DEMO_MODEL, box, pix)
        sim = simulate.simulate_particles(gt, pix, 200, snr=5.0, seed=3)
        particles_star.write_particles(sim, pix, folder)
        write_map(os.path.join(folder, "ref.mrc"), fourier.lowpass(gt, pix, 30.0), pix)
        hook = f"{sys.executable} {REPO}/redprior_exrecon.py --mode gaussian --keep"
        os.makedirs(os.path.join(folder, "out"))
        cmd = ["relion_refine", "--o", "out/run", "--i", "particles.star", "--ref", "ref.mrc",
               "--iter", "1", "--K", "1", "--tau2_fudge", "2", "--ini_high", "4.2",
               "--particle_diameter", "230", "--flatten_solvent", "--zero_mask",
               "--oversampling", "1", "--healpix_order", "1", "--offset_range", "2",
               "--offset_step", "1", "--sym", "C1", "--norm", "--scale", "--j", "2",
               "--pad", "2", "--random_seed", "1", "--external_reconstruct",
               "--dont_combine_weights_via_disc", "--preread_images"]
        proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=1200,
                              env=dict(os.environ, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook))
        self.assertEqual(proc.returncode, 0, proc.stdout[-2000:] + proc.stderr[-2000:])
        star = "out/run_it001_class001_external_reconstruct.star"
        with open(os.path.join(folder, star)) as fh:
            self.assertIn("_rlnCurrentImageSize                            128", fh.read())
        subprocess.run(["relion_external_reconstruct", star, "--o", "relion.mrc"], cwd=folder,
                       check=True, capture_output=True, timeout=600)
        old = os.getcwd()
        os.chdir(folder)
        self.addCleanup(os.chdir, old)
        a, _ = read_map("relion.mrc")
        # RELION's program on our inputs: RELION's own numbers; numpy: float32 rounding
        # of RELION's files (measured 3e-7)
        for how, bound in (("relion", 1e-9), ("numpy", 1e-5)):
            self.assertEqual(exrecon_main([star, "--keep", "--minres-map", "-1",
                                           "--reconstruction", how, "--o", f"{how}.mrc"]), 0)
            b, _ = read_map(f"{how}.mrc")
            rel = float(np.sqrt(np.mean((b - a) ** 2) / np.mean(a ** 2)))
            self.assertLess(rel, bound, how)
