"""Tiled inference, the worker serving both halves at once, and its device selection.

Tiling: with numpy stand-ins for the network (identity, local operators) the blend is checked
against the untiled result to float precision; with the shipped U-Net (whose receptive field
is far larger than the small tiles used here) against the untiled pass by correlation.
The worker: served in a thread of the test process with a slow fake denoiser, so that the
overlap of two requests is read from the fake's own timestamps.
"""
import os
import shutil
import tempfile
import threading
import time
import unittest
from unittest import mock

import numpy as np
from scipy import ndimage

from redprior.core.denoiser import tiling, worker
from redprior.core.denoiser.model import Denoiser, DenoiserError
from redprior.tests.placeholder_model import write_placeholder_model


def identity(batch):
    return batch.copy()


def smooth3(batch):
    """A local operator (3^3 mean, zero outside, like a 'same' convolution) then a nonlinearity."""
    return np.stack([np.tanh(ndimage.uniform_filter(t, 3, mode='constant')) for t in batch])


class TestTiling(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(0)

    def test_weights_sum_to_one_everywhere(self):
        for n, tile, overlap in ((80, 32, 8), (64, 32, 16), (100, 48, 16), (129, 64, 16)):
            ones = tiling.apply_tiled(np.ones_like, np.zeros((n, n, n), np.float32), tile,
                                      overlap)
            np.testing.assert_allclose(ones, 1.0, atol=1e-6, err_msg=str((n, tile, overlap)))
            total = np.zeros(n)
            for s, w in tiling.axis_weights(n, tiling.fit_tile(n, tile, overlap), overlap):
                total[s:s + w.size] += w
            np.testing.assert_allclose(total, 1.0, atol=1e-12)

    def test_identity_is_reproduced(self):
        x = self.rng.normal(size=(80, 80, 80)).astype(np.float32)
        y = tiling.apply_tiled(identity, x, 32, 8)
        # to float32 rounding where tiles blend, exactly where one tile alone covers a voxel
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-6)
        self.assertTrue(np.array_equal(y[8:24, 8:24, 8:24], x[8:24, 8:24, 8:24]))

    def test_local_operator_matches_the_untiled_result(self):
        for n, tile, overlap in ((80, 32, 8), (96, 48, 16), (70, 32, 8)):
            x = self.rng.normal(size=(n, n, n)).astype(np.float32)
            whole = smooth3(x[None])[0]
            tiled = tiling.apply_tiled(smooth3, x, tile, overlap)
            # the ramp is 0 within overlap // 4 >= 1 voxel of an inner face: exact up to rounding
            self.assertLess(np.abs(tiled - whole).max(), 1e-6, (n, tile, overlap))

    def test_batches_of_tiles_give_the_same_result(self):
        x = self.rng.normal(size=(80, 80, 80)).astype(np.float32)
        one = tiling.apply_tiled(smooth3, x, 32, 8)
        four = tiling.apply_tiled(smooth3, x, 32, 8, batch=4)
        np.testing.assert_array_equal(one, four)

    def test_a_map_within_one_tile_goes_through_whole(self):
        calls = []

        def net(batch):
            calls.append(batch.shape)
            return smooth3(batch)
        x = self.rng.normal(size=(32, 32, 32)).astype(np.float32)
        y = tiling.apply_tiled(net, x, 32, 8)
        self.assertEqual(calls, [(1, 32, 32, 32)])
        np.testing.assert_array_equal(y, smooth3(x[None])[0])

    def test_tiles_cover_the_box_and_respect_the_bounds(self):
        for n in range(33, 400, 7):
            for tile, overlap, mult in ((128, 16, 16), (96, 16, 16), (64, 8, 1)):
                t = tiling.fit_tile(n, tile, overlap, mult)
                self.assertLessEqual(t, tile)
                self.assertEqual(t % mult, 0)
                first = tiling.starts(n, t, overlap)
                covered = np.zeros(n, bool)
                for a, b in zip(first, first[1:]):
                    self.assertGreaterEqual(a + t - b, overlap)  # neighbours share the blend zone
                for s in first:
                    covered[s:s + t] = True
                self.assertTrue(covered.all(), (n, tile, overlap))
        # a box just above the tile is not run as 8 nearly whole boxes
        self.assertEqual(tiling.fit_tile(144, 128, 16, 16), 80)

    def test_settings_arguments_environment_defaults(self):
        with mock.patch.dict(os.environ, {tiling.ENV_TILE: '', tiling.ENV_OVERLAP: ''}):
            self.assertEqual(tiling.settings(), (tiling.DEFAULT_TILE, tiling.DEFAULT_OVERLAP))
            self.assertEqual(tiling.settings(100, 8, multiple=16), (96, 8))
            self.assertEqual(tiling.settings(8, 0, multiple=16), (16, 0))
        with mock.patch.dict(os.environ, {tiling.ENV_TILE: '64', tiling.ENV_OVERLAP: '24'}):
            self.assertEqual(tiling.settings(), (64, 24))
            self.assertEqual(tiling.settings(tile=32, overlap=8), (32, 8))
        with mock.patch.dict(os.environ, {tiling.ENV_TILE: '0'}):
            self.assertEqual(tiling.settings()[0], 0)
        with mock.patch.dict(os.environ, {tiling.ENV_TILE: 'big'}):
            with self.assertRaisesRegex(ValueError, 'REDPRIOR_TILE must be a whole number'):
                tiling.settings()
        with self.assertRaisesRegex(ValueError, 'at most half the tile'):
            tiling.settings(32, 17)


class TestTiledDenoiser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='redprior_tiling_')
        cls.model = write_placeholder_model(os.path.join(cls.dir, 'smooth.keras'), 32, 2.0)
        rng = np.random.default_rng(1)
        cls.x = ndimage.gaussian_filter(rng.normal(size=(64, 64, 64)), 2).astype(np.float32)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_small_box_takes_the_untiled_path_unchanged(self):
        # box 64 < the default tile: bit-identical to the untiled pass
        np.testing.assert_array_equal(Denoiser(self.model)(self.x, 2.0),
                                      Denoiser(self.model, tile=0)(self.x, 2.0))

    def test_tiled_placeholder_equals_untiled(self):
        # the placeholder is a 5^3 convolution and a ReLU: local, so the blend is exact
        whole = Denoiser(self.model, tile=0)(self.x, 2.0)
        tiled = Denoiser(self.model, tile=32, overlap=16)(self.x, 2.0)
        self.assertLess(np.abs(tiled - whole).max(), 1e-5 * np.abs(whole).max())

    def test_bad_settings_are_a_denoiser_error(self):
        with self.assertRaisesRegex(DenoiserError, 'at most half the tile'):
            Denoiser(self.model, tile=32, overlap=20)

    def test_shipped_unet_tiled_close_to_untiled(self):
        from redprior.core.io.shipped import DEFAULT_DENOISER, DEMO_MODEL
        from redprior.core.simulation import structure

        gt = structure.potential_map(DEMO_MODEL, 64, 2.0).astype(np.float32)
        rng = np.random.default_rng(0)
        x = gt + rng.normal(scale=gt.std(), size=gt.shape).astype(np.float32)
        whole = Denoiser(DEFAULT_DENOISER, tile=0)(x, 2.0)
        tiled = Denoiser(DEFAULT_DENOISER, tile=32, overlap=16)(x, 2.0)
        # measured: correlation 0.9976, RMS difference 5 % of the denoiser's change (tiles of
        # 32 are far below the U-Net's receptive field; at the default 128 it is ~0.5 %)
        self.assertGreater(np.corrcoef(tiled.ravel(), whole.ravel())[0, 1], 0.995)
        change = np.sqrt(np.mean((whole - x) ** 2))
        self.assertLess(np.sqrt(np.mean((tiled - whole) ** 2)), 0.08 * change)


class SlowDenoiser:
    """Answers 2 * map + pixel size after `seconds`, recording when each call ran."""

    def __init__(self, seconds):
        self.seconds, self.calls, self.lock = seconds, [], threading.Lock()
        self.running = self.most = 0

    def __call__(self, vol, pixel_size):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        t0 = time.time()
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.calls.append((t0, time.time()))
        return 2 * vol + pixel_size


class TestWorkerServesHalvesAtOnce(unittest.TestCase):
    def serve(self, denoiser, **kw):
        folder = tempfile.mkdtemp(prefix='redprior_w_')
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        path = os.path.join(folder, 'w.sock')
        server = threading.Thread(target=worker.serve, args=(None, path),
                                  kwargs=dict(denoiser=denoiser, **kw), daemon=True)
        server.start()
        self.assertTrue(worker.wait_ready(path, timeout=30))
        return path, server

    def requests(self, path, count):
        maps = [np.full((8, 8, 8), float(i), np.float32) for i in range(count)]
        results = [None] * count

        def ask(i):
            try:
                results[i] = worker.denoise_remote(path, maps[i], 1.5, timeout=60)
            except Exception as exc:  # noqa: BLE001 - checked below
                results[i] = exc
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        return maps, results

    def stop(self, path, server):
        worker.stop(path)
        server.join(15)
        self.assertFalse(server.is_alive())
        self.assertFalse(os.path.exists(path))
        self.assertFalse(os.path.exists(worker.ready_file(path)))

    def test_two_requests_run_together_and_both_are_right(self):
        slow = SlowDenoiser(1.5)
        path, server = self.serve(slow)
        maps, results = self.requests(path, 2)
        for m, r in zip(maps, results):
            np.testing.assert_array_equal(r, 2 * m + 1.5)
        (s1, e1), (s2, e2) = sorted(slow.calls)
        self.assertLess(s2, e1, 'the second request waited for the first to finish')
        self.stop(path, server)

    def test_at_most_max_passes_at_once(self):
        slow = SlowDenoiser(1.0)
        path, server = self.serve(slow, max_passes=2)
        maps, results = self.requests(path, 3)
        for m, r in zip(maps, results):
            np.testing.assert_array_equal(r, 2 * m + 1.5)
        self.assertEqual(slow.most, 2)
        self.stop(path, server)

    def test_waiting_for_a_pass_is_bounded(self):
        slow = SlowDenoiser(3.0)
        path, server = self.serve(slow, max_passes=1, pass_wait=0.5)
        maps, results = self.requests(path, 2)
        busy = [r for r in results if isinstance(r, worker.WorkerUnavailable)]
        done = [r for r in results if isinstance(r, np.ndarray)]
        self.assertEqual((len(busy), len(done)), (1, 1), results)
        self.assertIn('busy (no network pass free within 0.5 s)', str(busy[0]))
        self.stop(path, server)


class TestWorkerLifetime(unittest.TestCase):
    def test_worker_stops_when_its_starter_is_killed(self):
        """A refinement killed with SIGKILL cannot stop its worker: the worker sees that the
        process that started it is gone and stops (its log says so, its socket goes)."""
        import signal
        import subprocess
        import sys
        import time

        folder = tempfile.mkdtemp(prefix='redprior_wlife_')
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        model = write_placeholder_model(os.path.join(folder, 'smooth.keras'), 16, 2.0)
        log = os.path.join(folder, 'worker.log')
        starter = subprocess.Popen(
            [sys.executable, '-c',
             'import sys, time; from redprior.core.denoiser import worker; '
             'proc, path = worker.start(sys.argv[1], sys.argv[2], timeout=120); '
             'print(proc.pid, path, flush=True); time.sleep(600)', model, log],
            stdout=subprocess.PIPE, text=True)
        self.addCleanup(starter.kill)
        pid, path = starter.stdout.readline().split()
        self.assertTrue(os.path.exists(path))
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait(10)
        t0 = time.time()
        while time.time() - t0 < 30 and worker.process_alive(int(pid)):
            try:  # reap it if it is our grandchild turned zombie (it is not our child)
                os.waitpid(int(pid), os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        gone = not os.path.exists(path)
        text = open(log).read()
        self.assertIn('the process that started this worker (%d) is gone: stopping'
                      % starter.pid, text)
        self.assertTrue(gone, 'socket %s left behind' % path)


class TestWorkerDevice(unittest.TestCase):
    def test_cuda_devices(self):
        for gpu, want in ((None, ''), ('', ''), (' ', ''), ('0', '0'), ('0,1', '0,1'),
                          ('"1"', '1'), ('0,0:1,1', '0,1'), ([0, 1], '0,1')):
            self.assertEqual(worker.cuda_devices(gpu), want, gpu)

    def test_cpu_worker_says_so_in_its_log_and_serves(self):
        folder = tempfile.mkdtemp(prefix='redprior_wdev_')
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        model = write_placeholder_model(os.path.join(folder, 'smooth.keras'), 16, 2.0)
        log = os.path.join(folder, 'worker.log')
        proc, path = worker.start(model, log, timeout=120, gpu=None)
        rng = np.random.default_rng(2)
        maps = [rng.normal(size=(48, 48, 48)).astype(np.float32) for _ in range(2)]
        got = [None, None]
        try:
            # both halves at once through the one loaded Keras model: the same maps as in-process
            threads = [threading.Thread(target=lambda i=i: got.__setitem__(
                i, worker.denoise_remote(path, maps[i], 2.0, timeout=60))) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(90)
        finally:
            worker.shutdown(proc, path)
        local = Denoiser(model)
        for m, y in zip(maps, got):
            np.testing.assert_allclose(y, local(m, 2.0), rtol=1e-5, atol=1e-6)
        self.assertEqual(proc.returncode, 0)
        text = open(log).read()
        self.assertIn('redprior worker: no GPU usable (none requested: CUDA_VISIBLE_DEVICES is '
                      'empty), running on the CPU', text)
        self.assertFalse(os.path.exists(os.path.dirname(path)))
