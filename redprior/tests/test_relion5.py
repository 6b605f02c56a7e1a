"""The hook against RELION 5 (slow; needs a RELION 5 build, see README 'RELION versions').

    REDPRIOR_RELION5_BIN=/path/to/relion5/build/bin venv/bin/python -m pytest -m slow \
        redprior/tests/test_relion5.py

Build (CPU only, no GUI, no downloads; ~1-2 h on 2 cores):
    git clone https://github.com/3dem/relion -b ver5.0 && mkdir relion/build && cd relion/build
    cmake .. -DGUI=OFF -DCUDA=OFF -DALTCPU=OFF -DFORCE_OWN_FFTW=OFF -DFETCH_WEIGHTS=OFF
    make refine refine_mpi external_reconstruct

Checks: (1) lambda = 0 is RELION 5's own reconstruction (its relion_external_reconstruct
on the files its relion_refine hands the hook), through RELION's program and through the
numpy re-implementation; the STAR carries RELION 4/5's rlnPixelSize, which the hook uses.
(2) a short CW-RED auto-refine (relion_refine_mpi, 3 ranks) with the shipped denoiser
finishes, with both halves and the final joined call through the hook and lambda from the
ramp.
"""
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import pytest

from redprior.core.io.mrc import read_map
from redprior.core.io.shipped import DEFAULT_DENOISER
from redprior.core.prior import schedule
from redprior.core.prior.history import read_log
from redprior.tests.test_exrecon_relion import PIX, REPO, make_dataset

BIN = os.environ.get("REDPRIOR_RELION5_BIN", "")
HAVE_RELION5 = bool(BIN) and os.path.exists(os.path.join(BIN, "relion_refine_mpi"))


@pytest.mark.slow
@unittest.skipUnless(HAVE_RELION5, "set REDPRIOR_RELION5_BIN to a RELION 5 build's bin folder")
class TestRelion5(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        folder = tempfile.mkdtemp(prefix="redprior_relion5_")
        cls.addClassCleanup(shutil.rmtree, folder, ignore_errors=True)
        cls.dataset = make_dataset(pathlib.Path(folder))
        # RELION 5 first on PATH: the hook finds RELION 5's relion_external_reconstruct
        cls.env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"],
                       OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                       OMPI_MCA_rmaps_base_oversubscribe="1")

    def run_cmd(self, cmd, env, cwd=None):
        proc = subprocess.run(cmd, cwd=cwd or self.dataset, env=env, capture_output=True,
                              text=True, timeout=3600)
        self.assertEqual(proc.returncode, 0, proc.stdout[-2000:] + proc.stderr[-2000:])
        return proc

    def test_lambda0_is_relion5s_reconstruction(self):
        out = self.dataset / "l0"
        out.mkdir()
        hook = f"{sys.executable} {REPO}/redprior_exrecon.py --mode gaussian --keep"
        self.run_cmd([os.path.join(BIN, "relion_refine"), "--o", "l0/run", "--i",
                      "particles.star", "--ref", "ref.mrc", "--iter", "1", "--K", "1",
                      "--tau2_fudge", "2", "--ini_high", "30", "--particle_diameter", "110",
                      "--oversampling", "1", "--healpix_order", "1", "--offset_range", "2",
                      "--offset_step", "1", "--sym", "C1", "--norm", "--scale", "--j", "1",
                      "--pad", "2", "--random_seed", "1", "--external_reconstruct",
                      "--dont_combine_weights_via_disc", "--preread_images"],
                     dict(self.env, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook))
        star = os.path.relpath(glob.glob(str(out / "run_it001*_external_reconstruct.star"))[0],
                               self.dataset)
        with open(self.dataset / star) as fh:
            self.assertIn("_rlnPixelSize", fh.read())  # RELION 4/5 write it; 3.1 does not
        self.run_cmd([os.path.join(BIN, "relion_external_reconstruct"), star, "--o",
                      "l0/relion5.mrc"], self.env)
        a, _ = read_map(str(out / "relion5.mrc"))
        for how, bound in (("relion", 1e-9), ("numpy", 1e-5)):
            self.run_cmd([sys.executable, os.path.join(REPO, "redprior_exrecon.py"), star,
                          "--keep", "--minres-map", "-1", "--reconstruction", how, "--o",
                          f"l0/{how}.mrc"], self.env)
            b, _ = read_map(str(out / f"{how}.mrc"))
            rel = float(np.sqrt(np.mean((b - a) ** 2) / np.mean(a ** 2)))
            print(f"RELION 5, lambda 0, {how}: relative rms difference {rel:.2e}")
            self.assertLess(rel, bound, how)

    def test_short_cwred_refinement(self):
        out = self.dataset / "cw"
        out.mkdir()
        log = out / "log.jsonl"
        low, high = 12.0, 8.0
        # no --angpix: the hook takes RELION 5's rlnPixelSize
        hook = (f"{sys.executable} {REPO}/redprior_exrecon.py --mode cwred --model "
                f"{DEFAULT_DENOISER} --cw-low {low:g} --cw-high {high:g} --log {log}")
        self.run_cmd(["mpirun", "-n", "3", os.path.join(BIN, "relion_refine_mpi"), "--o",
                      "cw/run", "--auto_refine", "--split_random_halves", "--i",
                      "particles.star", "--ref", "ref.mrc", "--ini_high", "30",
                      "--particle_diameter", "110", "--flatten_solvent", "--zero_mask",
                      "--oversampling", "1", "--healpix_order", "1",
                      "--auto_local_healpix_order", "3", "--offset_range", "2",
                      "--offset_step", "1", "--sym", "C1", "--low_resol_join_halves", "40",
                      "--norm", "--scale", "--j", "1", "--pad", "2", "--random_seed", "42",
                      "--dont_combine_weights_via_disc", "--preread_images",
                      "--external_reconstruct"],
                     dict(self.env, RELION_EXTERNAL_RECONSTRUCT_EXECUTABLE=hook))
        self.assertTrue(os.path.exists(out / "run_class001.mrc"))
        recs = [r for r in read_log(str(log)) if "error" not in r]
        self.assertEqual({r["half"] for r in recs}, {0, 1, 2})  # both halves and the final
        for r in recs:
            res = r["resolution"] if r["resolution"] is not None else float("inf")
            self.assertAlmostEqual(r["lambda"], schedule.cwred_lambda(res, low, high), places=6)
            self.assertEqual(r["reconstruction"], "relion_external_reconstruct")
        print("RELION 5 CW-RED: " + json.dumps([[r["iteration"], r["half"], r["resolution"],
                                                 round(r["lambda"], 3)] for r in recs]))
