"""Denoiser library: U-Net, training pairs, pair store, training loop, single-pass evaluation.

Everything is tiny (16^3 maps, a 2-level U-Net, a handful of steps) so the file runs in well
under a minute on two shared cores; real training is a separate, slow job.
"""
import json
import os
import pathlib
import shutil
import tempfile
import unittest

import numpy as np

from redprior.core.denoiser import single_pass as SP
from redprior.core.denoiser import training as TR
from redprior.core.training_data.gaussian import (
    gaussian_noise_pair, gaussian_pairs, noise_profile_for_resolution)
from redprior.core.training_data.pairs import Pair, fsc_filtered_target, fsc_weights
from redprior.core.training_data.perturbed import perturbed_pose_pair
from redprior.core.training_data.recorded import pair_from_record, record_files
from redprior.core.training_data.store import PairStore
from redprior.core.fourier.grid import shell_index
from redprior.core.fourier.filters import lowpass, rfft_centred
from redprior.core.fourier.fsc import correlation
from redprior.core.geometry.masks import spherical_mask
from redprior.core.io.mrc import write_map
from redprior.tests.synthetic import blobs

BOX, PX = 16, 3.0


def make_tmp_dir(case):
    """A fresh temporary folder (pathlib.Path), removed when the test `case` ends."""
    folder = tempfile.mkdtemp(prefix="redprior_test_")
    case.addCleanup(shutil.rmtree, folder, ignore_errors=True)
    return pathlib.Path(folder)


def shell_amplitudes(vol):
    ft = np.abs(rfft_centred(vol)).ravel()
    shells = shell_index(vol.shape[0]).ravel()
    return np.bincount(shells, ft ** 2)


# ------------------------------------------------------------------------------ targets
class TestFscFilteredTarget(unittest.TestCase):
    def test_fsc_filtered_target_passes_fsc_one_and_removes_fsc_zero(self):
        gt = blobs(BOX, 1)
        nsh = BOX // 2 + 1
        np.testing.assert_allclose(fsc_filtered_target(gt, np.ones(nsh)), gt, atol=1e-5)
        assert np.abs(fsc_filtered_target(gt, np.zeros(nsh))).max() == 0
        # a step: shells far below it unchanged, shells far above it gone (smoothing window 6)
        step = np.where(np.arange(nsh) < 5, 1.0, 0.0)
        p_gt, p_t = shell_amplitudes(gt), shell_amplitudes(fsc_filtered_target(gt, step))
        np.testing.assert_allclose(p_t[:2], p_gt[:2], rtol=1e-5)
        assert np.all(p_t[8:] < 1e-12 * p_gt[0])
        # negative FSC values are clipped to 0, values above 1 to 1
        assert np.all(fsc_weights([1.5, 1.2, -0.3, -0.5], smooth=1) == [1, 1, 0, 0])


# -------------------------------------------------------------------------------- pairs
class TestTrainingPairs(unittest.TestCase):
    """The three ways of making a pair: Gaussian noise, a recorded RELION map, perturbed poses."""

    def test_gaussian_pair_resolution_and_store_roundtrip(self):
        tmp_path = make_tmp_dir(self)
        gt = blobs(32, 3)
        rng = np.random.default_rng(1)
        mask = spherical_mask(32, 10, 3)
        got = []
        for d in (8.0, 15.0):
            prof = noise_profile_for_resolution(gt, PX, d)
            p = gaussian_noise_pair(gt, prof, mask, rng, PX, extra_shells=10)
            x, target, fsc, res = p  # unpacks as the 4-tuple
            assert p.mode == "gaussian" and p.seconds > 0
            assert 0.6 * d < res < 1.7 * d
            got.append(res)
            assert correlation(target, gt) > 0.8
            # the solvent is quieter than the particle (mask-damped noise)
            noise = x - gt
            assert noise[mask < 0.01].std() < 0.6 * noise[mask > 0.99].std()
        assert got[0] < got[1]
        with PairStore(tmp_path / "s", flush_every=100) as st:
            st.add_pair(p, "gt3", PX)
        os.remove(tmp_path / "s" / "manifest.json")  # a crash before the manifest was written
        st2 = PairStore(tmp_path / "s")
        assert len(st2) == 1 and st2.box == 32 and st2.structures() == ["gt3"]
        back = next(st2.iter_pairs())
        np.testing.assert_array_equal(back["x"], x)
        # pytest.approx(res): relative tolerance 1e-6
        self.assertAlmostEqual(back["resolution"], res, delta=1e-6 * abs(res))
        assert back["mode"] == "gaussian"
        with self.assertRaisesRegex(ValueError, "does not fit"):
            st2.add(x[:16, :16, :16], x[:16, :16, :16], fsc, res, "a", PX)

    def test_pair_from_record_fits_scale(self):
        tmp_path = make_tmp_dir(self)
        gt = blobs(BOX, 2)
        rng = np.random.default_rng(2)
        unreg = 3.0 * gt + 0.5 + 0.05 * rng.standard_normal(gt.shape)
        write_map(str(tmp_path / "it004_half1_unreg.mrc"), unreg, PX)
        fsc = np.linspace(1, 0, BOX // 2 + 1)
        with open(tmp_path / "it004_half1_fsc.json", "w") as fh:
            json.dump({"fsc": fsc.tolist(), "resolution": 7.5, "pixel_size": PX}, fh)
        (m, j), = record_files(tmp_path)
        p = pair_from_record(m, j, gt)
        # pytest.approx(3.0, rel=0.02)
        self.assertAlmostEqual(p.info["scale"], 3.0, delta=0.02 * 3.0)
        assert p.resolution == 7.5 and p.mode == "record"
        np.testing.assert_allclose(p.target, 3.0 * fsc_filtered_target(gt, fsc) + 0.5, atol=0.02)

    def test_perturbed_pose_pair_reconstructs_and_degrades_with_errors(self):
        gt = blobs(BOX, 4)
        clean = perturbed_pose_pair(gt, PX, 300, snr=1e4, angle_error_deg=0, shift_error_A=0,
                                    rng=0)
        assert correlation(clean.x, gt) > 0.97 and correlation(clean.info["x2"], gt) > 0.97
        noisy = perturbed_pose_pair(gt, PX, 300, snr=1e4, angle_error_deg=20, shift_error_A=3,
                                    rng=0)
        assert noisy.mode == "perturbed_pose" and noisy.seconds > 0
        assert correlation(noisy.x, gt) < correlation(clean.x, gt) - 0.02
        assert np.mean(noisy.fsc[4:8]) < np.mean(clean.fsc[4:8])
        ctf = perturbed_pose_pair(gt, PX, 300, snr=1e4, angle_error_deg=0, shift_error_A=0,
                                  rng=0, ctf=dict(defocus_min_A=5000.0, defocus_max_A=15000.0))
        assert correlation(ctf.x, gt) > 0.95  # B = sum ctf y, K = sum ctf^2: CTF-corrected


# ---------------------------------------------------------------------------- rotations
class TestCubeRotations(unittest.TestCase):
    def test_24_cube_rotations_distinct_and_proper(self):
        vol = np.random.default_rng(0).standard_normal((4, 4, 4))
        outs = {TR.rotate(vol, r).tobytes() for r in TR.CUBE_ROTATIONS}
        assert len(TR.CUBE_ROTATIONS) == 24 and len(outs) == 24
        mats = [TR.rotation_matrix(r) for r in TR.CUBE_ROTATIONS]
        assert len({m.tobytes() for m in mats}) == 24
        for m in mats:
            assert round(np.linalg.det(m)) == 1 and np.array_equal(m @ m.T, np.eye(3))
        batch = np.stack([vol, vol])[..., None]  # batched arrays rotate on axes 1..3
        r = TR.CUBE_ROTATIONS[7]
        np.testing.assert_array_equal(TR.rotate(batch, r, 1)[1, ..., 0], TR.rotate(vol, r))


# ----------------------------------------------------------------------------- training
class TestTrainingOnPairStore(unittest.TestCase):
    """Split and training loop on one shared PairStore, built once for the class:
    4 structures x 3 Gaussian-noise pairs (6-20 A)."""

    @classmethod
    def setUpClass(cls):
        folder = tempfile.mkdtemp(prefix="redprior_pairs_")
        cls.addClassCleanup(shutil.rmtree, folder, ignore_errors=True)
        folder = pathlib.Path(folder)
        rng = np.random.default_rng(0)
        mask = spherical_mask(BOX, BOX / 3, 2)
        with PairStore(folder) as st:
            for s in range(4):
                for p in gaussian_pairs(blobs(BOX, s), PX, 3, rng, 6.0, 20.0, mask):
                    st.add_pair(p, f"s{s}", PX)
        cls.store = PairStore(folder)

    def test_validation_split_by_structure(self):
        store = self.store
        for seed in range(5):
            tr, va, tr_s, va_s = TR.split_by_structure(store, 0.25, seed)
            assert len(va_s) == 1 and not set(tr_s) & set(va_s)
            assert {store.entries[i]["structure"] for i in tr}.isdisjoint(
                {store.entries[i]["structure"] for i in va})
            assert sorted(np.concatenate([tr, va])) == list(range(len(store)))

    def test_unet_train_save_reload_continue(self):
        from redprior.core.denoiser.model import Denoiser, read_metadata
        from redprior.core.denoiser.unet import build_unet

        import keras
        store = self.store
        tmp_path = make_tmp_dir(self)
        keras.utils.set_random_seed(0)
        model = build_unet(levels=2, base_filters=4)
        # residual learning inside the model: zero noise estimate -> the input comes back
        saved = model.get_layer("out_conv").get_weights()
        model.get_layer("out_conv").set_weights([np.zeros_like(w) for w in saved])
        x = np.random.default_rng(0).standard_normal((1, BOX, BOX, BOX, 1)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(model(x)), x, atol=1e-6)
        model.get_layer("out_conv").set_weights(saved)

        _, va, _, _ = TR.split_by_structure(store, 0.25, 0)
        seen = []
        out = str(tmp_path / "tiny.keras")
        hist = TR.train(model, store, epochs=3, batch=2, lr=3e-3, val_fraction=0.25, seed=0,
                        steps_per_epoch=4, output=out, callback=lambda *a: seen.append(a))
        losses = [e["train_loss"] for e in hist["epochs"]]
        assert len(seen) == 3 and seen[-1][0] == 3 and seen[-1][3] > 0
        assert losses[-1] < losses[0]
        assert hist["epochs"][-1]["val_loss"] is not None

        meta = read_metadata(out)
        assert meta["normalisation"] == "standardise" and meta["residual"] is False
        assert meta["multiple"] == 4 and meta["box"] == BOX and meta["pixel_size"] == PX
        assert 6.0 <= meta["training_resolution"][0] <= meta["training_resolution"][1]
        assert "single_pass" in meta and "cw_low" in meta and "per_shell_lambda" in meta
        with open(TR.history_path(out)) as fh:
            assert len(json.load(fh)["epochs"]) == 3

        reloaded = keras.saving.load_model(out, compile=False)
        np.testing.assert_array_equal(np.asarray(reloaded(x)),
                                      np.asarray(model(x, training=False)))
        vol = store.load(int(va[0]))["x"]
        np.testing.assert_allclose(Denoiser(out)(vol, PX), SP.keras_denoise_fn(model)(vol),
                                   rtol=1e-5, atol=1e-5 * float(np.abs(vol).max()))

        hist2 = TR.train(out, store, epochs=1, batch=2, lr=1e-3, steps_per_epoch=2, output=out,
                         single_pass=False)
        assert [e["epoch"] for e in hist2["epochs"]] == [1, 2, 3, 4]


# --------------------------------------------------------------------------- single pass
class TestSinglePass(unittest.TestCase):
    def test_single_pass_lowpass_toy_denoiser(self):
        """A low-pass + solvent-mask 'denoiser' on white-noise maps: it helps strongly noisy
        maps (ratio < 1) and hurts nearly clean ones (ratio > 1) by blurring the structure.
        (A pure per-shell filter would leave every shell's FSC unchanged: the mask is what
        adds gain.)"""
        gt = blobs(BOX, 5)
        mask = spherical_mask(BOX, 5, 2)
        rng = np.random.default_rng(3)
        pairs = []
        for sigma, res in ((2.0, 15.0), (1.0, 12.0), (0.002, 4.0)):
            for _ in range(2):
                x = gt + sigma * gt.std() * rng.standard_normal(gt.shape)
                pairs.append(Pair(x.astype(np.float32), gt, np.ones(BOX // 2 + 1), res))
        out = SP.evaluate(lambda v: lowpass(v, PX, 12.0) * mask, pairs, pixel_size=PX)
        by_res = {m["resolution"]: m for m in out["maps"]}
        assert by_res[15.0]["ratio_l2"] < 0.6 and by_res[15.0]["ratio_l1"] < 0.6
        assert by_res[4.0]["ratio_l2"] > 1.0
        lam = np.asarray(out["per_shell"]["lambda"])
        b15 = int(np.searchsorted(out["bins"], 15.0, "right") - 1)
        assert lam.shape == (len(out["bins"]) - 1, BOX // 2 + 1)
        assert lam[b15, 1:4].min() > 0.2  # the mask recovers correlation of noisy maps
        b4 = int(np.searchsorted(out["bins"], 4.0, "right") - 1)
        assert np.all(lam[b4, 3:] == 0)  # ...and only loses it on a clean map
        assert np.all(np.isnan(lam[0]))  # empty bin
        per = SP.shell_table_row(out["per_shell"], 14.0, 32, PX / 2)
        assert per.shape == (17,) and np.all((per >= 0) & (per <= 1))

    def test_threshold_suggestion_on_constructed_curve(self):
        d = np.array([3.2, 3.7, 4.2, 4.7, 5.5, 6.5, 7.5, 9.0, 11.0, 13.5, 17.0, 25.0])
        # no gain worse than 10 A, linear in d down to 0.6 at 4.5 A, plateau below
        ratio = np.clip(1.0 - 0.4 * (10.0 - d) / 5.5, 0.6, 1.0)
        low, high, reason = SP.suggest_thresholds(d, ratio)
        assert reason == "measured"
        # pytest.approx(..., abs=0.5)
        self.assertAlmostEqual(low, 10.0, delta=0.5)
        self.assertAlmostEqual(high, 4.5, delta=0.5)
        assert SP.suggest_thresholds(d, np.ones_like(d))[:2] == (None, None)
        # gain everywhere, largest at low resolution (a denoiser trained on Gaussian noise): no
        # ramp, and never cw_high >= cw_low (which a refinement would refuse)
        flat = np.linspace(0.3, 0.15, len(d))
        low, high, reason = SP.suggest_thresholds(d, flat)
        assert (low, high) == (None, None) and "does not rise" in reason
