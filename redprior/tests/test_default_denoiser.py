"""The denoiser shipped in redprior/data/denoiser and the command that makes it.

Held-out maps: Gaussian-noise pairs (the mode it was trained on) of the demo's GluA2 NTD dimer
(3HSY), which the training-set builder keeps out of training, at fixed seeds and nominal
resolutions. The figure is the single-pass L2 ratio ||f(x~) - t|| / ||x~ - t|| against the
FSC-filtered truth t (< 1: the denoiser brings the map closer to the truth), as in its
TRAINING_REPORT.md. The demo's CW-RED refinement with this model is compared with plain RELION
in the demo itself (too slow for the default test run).
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from redprior.core.io.shipped import DEMO_MODEL
from redprior.core.prior import schedule
from redprior.core.denoiser import single_pass as SP
from redprior.core.simulation import structure
from redprior.core.training_data import gaussian as TP
from redprior.core.denoiser.model import Denoiser, metadata_path, read_metadata
from redprior.core.io.shipped import DEFAULT_DENOISER
from redprior.core.geometry.masks import solvent_mask

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESOLUTIONS = (4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 9.0, 12.0, 16.0)


def held_out_pairs(box, pixel, seed=0):
    """Gaussian-noise pairs of 3HSY (never trained on) at RESOLUTIONS, as 'training maps'
    makes them (solvent-damped noise, shells limited like RELION's current size)."""
    gt = structure.potential_map(DEMO_MODEL, box, pixel).astype(np.float64)
    mask = solvent_mask(gt, pixel)
    rng = np.random.default_rng(seed)
    pairs = []
    for d in RESOLUTIONS:
        if d < TP.max_resolution(box, pixel):
            continue
        prof = TP.noise_profile_for_resolution(gt, pixel, d, 1.6)
        pairs.append(TP.gaussian_noise_pair(gt, prof, mask, rng, pixel,
                                            extra_shells=TP.RELION_INCR_SHELLS))
    return pairs


class TestShippedDenoiser(unittest.TestCase):
    def test_shipped_files_and_metadata(self):
        meta = read_metadata(DEFAULT_DENOISER)
        assert os.path.getsize(DEFAULT_DENOISER) <= 10e6  # committed to the repository
        assert (meta["box"], meta["pixel_size"], meta["normalisation"]) == (64, 2.0, "standardise")
        low, high = meta["training_resolution"]
        assert low < 4.5 and high > 15.0
        # the single-pass curve of its own held-out structures ships with it, and held-out
        # structures were not trained on
        folder = os.path.dirname(DEFAULT_DENOISER)
        with open(os.path.join(folder, "training_history.json")) as fh:
            hist = json.load(fh)
        assert hist["structures_val"] and not set(hist["structures_val"]) & set(
            hist["structures_train"])
        assert meta["single_pass"]["medians"]["better than 10 A"]["median_l2"] < 1.0
        # measured on what the hook feeds it (scripts/measure_default_denoiser.py), the
        # training script's Gaussian-noise curve kept beside it
        assert "RELION-intermediate maps" in meta["single_pass"]["measured_on"]
        assert "Gaussian-noise" in meta["single_pass_gaussian"]["measured_on"]
        # the per-shell table that 'CW-RED per shell' needs, from the same held-out maps
        assert schedule.has_shell_table(meta)


class TestHeldOutStructure(unittest.TestCase):
    """Single-pass figures of the shipped model on 3HSY (never trained on); the model is
    loaded once for the class."""

    @classmethod
    def setUpClass(cls):
        cls.model = Denoiser(DEFAULT_DENOISER)

    def test_held_out_structure_at_training_pixel_size(self):
        model = self.model
        pairs = held_out_pairs(64, 2.0)
        result = SP.evaluate(SP.denoiser_fn(model, 2.0), pairs, pixel_size=2.0)
        med = SP.median_ratios(result["maps"])
        print("3HSY at 2 A/px:", json.dumps(med))
        assert med["better than 10 A"]["maps"] >= 8
        assert med["better than 10 A"]["median_l2"] < 1.0
        assert med["4-8 A"]["median_l2"] < 0.5  # 0.18 when shipped

    def test_held_out_structure_at_demo_pixel_size(self):
        """The demo's grid (box 48, 2.5 A/px): the model is Fourier-resampled by 1.25."""
        model = self.model
        pairs = held_out_pairs(48, 2.5, seed=1)
        result = SP.evaluate(SP.denoiser_fn(model, 2.5), pairs, pixel_size=2.5)
        med = SP.median_ratios(result["maps"])
        print("3HSY at 2.5 A/px:", json.dumps(med))
        assert med["better than 10 A"]["median_l2"] < 1.0


class TestTrainingCommand(unittest.TestCase):
    def test_training_command_small(self):
        """The documented command, on 4 structures for a few steps: a model that loads and
        denoises, its report and the held-out figures."""
        from redprior.core.structure_set.manifest import MANIFEST

        tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="redprior_train_"))
        self.addCleanup(shutil.rmtree, tmp_path, ignore_errors=True)

        # four chains of 2GTL that fit the 128 A box and ship with tmtools (always installed), so
        # that the test does not depend on the optional training sources
        with open(MANIFEST) as fh:
            manifest = json.load(fh)
        manifest["chains"] = [c for c in manifest["chains"]
                              if c["id"] in {"tmtools:2gtl.cif:%s" % k for k in "ABCD"}]
        assert len(manifest["chains"]) == 4
        small = tmp_path / "manifest.json"
        small.write_text(json.dumps(manifest))
        out = tmp_path / "model"
        env = dict(os.environ, REDPRIOR_SCIPION_ROOT=str(tmp_path / "scipion"))
        cmd = [sys.executable, os.path.join(REPO, "scripts", "train_default_denoiser.py"),
               "--out", str(out), "--manifest", str(small), "--pairs-per-structure", "2",
               "--epochs", "1", "--steps-per-epoch", "2", "--val-fraction", "0.3",
               "--base-filters", "2"]
        run = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        path = out / "redprior_default_denoiser.keras"
        meta = json.loads(open(metadata_path(str(path))).read())
        assert meta["box"] == 64 and meta["parameters"] < 100000
        report = (out / "TRAINING_REPORT.md").read_text()
        assert "8 pairs of 4 structures" in report
        assert "--pairs-per-structure 2" in report
        for png in ("loss.png", "single_pass.png", "pair_examples.png"):
            assert (out / png).stat().st_size > 1000
        # the shipped copy (weights only, no optimiser state) loads and changes a noisy map
        x = held_out_pairs(64, 2.0)[0].x
        y = Denoiser(str(path))(x, 2.0)
        assert y.shape == x.shape and np.all(np.isfinite(y)) and not np.allclose(y, x)

        # an interrupted run (here: 'train denoiser' marked failed, as a killed run is left)
        # is continued in resume mode by the same command; the finished pairs are reused
        interrupt = (
            "import sys; sys.path.insert(0, %r); import redprior_env; "
            "redprior_env.setup_environment(%r); from pyworkflow.project import Manager; "
            "p = Manager().loadProject('redprior_default_denoiser'); "
            "t = [r for r in p.getRuns() if type(r).__name__ == 'ProtRedPriorTrainDenoiser'][-1]; "
            "t.setFailed('interrupted'); p._storeProtocol(t)" % (REPO, str(tmp_path / "scipion")))
        subprocess.run([sys.executable, "-c", interrupt], env=env, cwd=str(tmp_path), check=True,
                       capture_output=True, timeout=120)
        again = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True,
                               timeout=600)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "reusing finished 'training maps' run" in again.stdout
        line = [x for x in again.stdout.splitlines() if "continuing the interrupted" in x]
        assert line and re.search(r"train denoiser.*' run \d+ \(failed\)", line[0]), line


class TestMeasureCommand(unittest.TestCase):
    """scripts/measure_default_denoiser.py without its RELION runs: the held-out manifest and
    what --write puts into a copy of the shipped folder, from a real single pass of the
    shipped model (Gaussian-noise pairs of 3HSY stand in for the recorded maps)."""

    def setUp(self):
        sys.path.insert(0, os.path.join(REPO, "scripts"))
        self.addCleanup(sys.path.remove, os.path.join(REPO, "scripts"))
        import measure_default_denoiser
        self.M = measure_default_denoiser
        self.tmp = tempfile.mkdtemp(prefix="redprior_measure_")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def test_held_out_manifest_takes_one_family_after_another(self):
        from redprior.core.structure_set.manifest import load_manifest
        hist = os.path.join(os.path.dirname(DEFAULT_DENOISER), "training_history.json")
        out = os.path.join(self.tmp, "m.json")
        names = self.M.held_out_manifest(hist, 4, out)
        self.assertEqual([n.split("_")[1] for n in names], ["ldh", "trypsins", "dssp", "ldh"])
        chains = load_manifest(out)["chains"]
        self.assertEqual(len(chains), 4)
        with open(hist) as fh:
            val = json.load(fh)["structures_val"]
        self.assertEqual(len(self.M.held_out_manifest(hist, 0, out)), len(val))
        bad = os.path.join(self.tmp, "h.json")
        with open(bad, "w") as fh:
            json.dump({"structures_val": ["s000_not_in_the_manifest"]}, fh)
        with self.assertRaises(SystemExit) as ctx:
            self.M.held_out_manifest(bad, 0, out)
        self.assertIn("not_in_the_manifest", str(ctx.exception))

    def test_sets_are_snr_particle_pairs(self):
        self.assertEqual(self.M.parse_sets("0.15:800,0.1:400"), [(0.15, 800), (0.1, 400)])
        with self.assertRaises(SystemExit) as ctx:
            self.M.parse_sets("0.15,800")
        self.assertIn("SNR:PARTICLES", str(ctx.exception))

    def test_write_keeps_the_gaussian_curve_and_the_benchmark_ramp(self):
        folder = os.path.join(self.tmp, "denoiser")
        shutil.copytree(os.path.dirname(DEFAULT_DENOISER), folder)
        old = read_metadata(DEFAULT_DENOISER)
        result = SP.evaluate(SP.denoiser_fn(Denoiser(DEFAULT_DENOISER), 2.0),
                             held_out_pairs(64, 2.0)[:3], pixel_size=2.0)  # 4.5-5.5 A
        args = self.M.build_parser().parse_args(["--out", folder])
        lines = self.M.table_lines(result, "test maps")
        self.assertTrue(any(re.match(r"\| 4\.5-5 \| \d+ \| 0\.\d{3} \|", x) for x in lines),
                        lines)
        for _ in range(2):  # a second --write replaces the report's section
            self.M.write_shipped(args, result, "test maps", lines)
        meta_path = metadata_path(os.path.join(folder, "redprior_default_denoiser.keras"))
        with open(meta_path) as fh:  # strict JSON (strict readers reject NaN)
            json.loads(fh.read(), parse_constant=lambda c: self.fail(f"{c} in {meta_path}"))
        meta = read_metadata(os.path.join(folder, "redprior_default_denoiser.keras"))
        self.assertEqual(meta["single_pass"]["measured_on"], "test maps")
        self.assertEqual(meta["single_pass"]["ratio_l2"],  # None: a bin without maps
                         [v if np.isfinite(v) else None for v in result["ratio_l2"]])
        # the Gaussian-noise curve of the training script, kept from the first --write on
        kept = old.get("single_pass_gaussian", old["single_pass"])
        self.assertEqual(meta["single_pass_gaussian"]["ratio_l2"], kept["ratio_l2"])
        self.assertEqual((meta["cw_low"], meta["cw_high"]), (20.0, 10.0))
        self.assertEqual(meta["curve_thresholds"]["cw_low"], result["cw_low"])
        self.assertIn("quality benchmark", meta["threshold_reason"])
        self.assertIn("the single-pass curve on test maps places", meta["threshold_reason"])
        self.assertTrue(schedule.has_shell_table(meta))
        report = open(os.path.join(folder, "TRAINING_REPORT.md")).read()
        self.assertEqual(report.count(self.M.REPORT_HEADING), 1)
        self.assertIn("Shipped CW-RED ramp: 20 / 10 A", report)
        self.assertGreater(os.path.getsize(os.path.join(folder, "single_pass.png")), 1000)
