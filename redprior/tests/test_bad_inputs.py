"""Bad inputs and faults: each gives a clear message (problem and fix), nothing hangs, nothing
is lost. One test per class of fault and entry point: the hook program, the worker, the core
checks the protocols' forms use, the map and JSON readers.

The external-reconstruct files here are written by the test (our own file handling, checked
against the real RELION files in test_exrecon_relion).
"""
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

from redprior.core.denoiser.model import DenoiserError, read_metadata
from redprior.core.denoiser.worker import WorkerUnavailable, denoise_remote, ready_file, stop
from redprior.core.io.jsonfile import JsonFileError, read_json, write_json
from redprior.core.io.mrc import MapError, read_map, write_map
from redprior.core.prior.history import read_log
from redprior.core.prior.settings import PriorSettings, prior_problems
from redprior.core.simulation.limits import simulation_problems
from redprior.core.validation import consensus
from redprior.tests.placeholder_model import write_placeholder_model

BOX, PIX = 16, 2.0
GENERAL = ['rlnExtReconsDataReal', 'rlnExtReconsDataImag', 'rlnExtReconsWeight',
           'rlnExtReconsResult', 'rlnExtReconsResultStarfile', 'rlnTau2FudgeFactor',
           'rlnPaddingFactor', 'rlnReferenceDimensionality', 'rlnOriginalImageSize',
           'rlnCurrentImageSize']


def writeJob(folder, fsc=None, tau2=None, current=BOX, drop=(), name='run_it003_half1_class001',
             extra=None):
    """B, K and the STAR of one external-reconstruct call (box 16, pad 1) in `folder`."""
    rng = np.random.default_rng(0)
    shape = (BOX, BOX, BOX // 2 + 1)
    files = {}
    for key, data in (('real', rng.normal(size=shape)), ('imag', rng.normal(size=shape)),
                      ('weight', 1.0 + rng.random(shape))):
        files[key] = os.path.join(folder, '%s_data_%s.mrc' % (name, key))
        write_map(files[key], data.astype(np.float32))
    values = dict(zip(GENERAL, [files['real'], files['imag'], files['weight'],
                                os.path.join(folder, name + '_external_reconstruct.mrc'),
                                os.path.join(folder, name + '_out.star'), 1, 1, 3, BOX, current]))
    n = BOX // 2 + 1
    fsc = np.linspace(1.0, 0.5, n) if fsc is None else fsc
    tau2 = np.ones(n) if tau2 is None else tau2
    lines = ['data_external_reconstruct_general', '']
    values.update(extra or {})  # e.g. RELION 4/5's rlnPixelSize, rlnParticleDiameter
    lines += ['_%s %s' % (k, v) for k, v in values.items() if k not in drop]
    lines += ['', 'data_external_reconstruct_tau2', '', 'loop_', '_rlnSpectralIndex #1',
              '_rlnReferenceTau2 #2']
    lines += ['_rlnGoldStandardFsc #3'] if 'fsc' not in drop else []
    for i in range(n):
        row = [str(i), repr(float(tau2[i]))] + ([repr(float(fsc[i]))] if 'fsc' not in drop else [])
        lines.append(' '.join(row))
    star = os.path.join(folder, name + '_external_reconstruct.star')
    with open(star, 'w') as fh:
        fh.write('\n'.join(lines) + '\n')
    return star, files


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='redprior_bad_')
        self.log = os.path.join(self.dir, 'log.jsonl')

    def run_hook(self, star, *args):
        """(exit status, stdout+stderr) of the hook program as RELION runs it."""
        out = subprocess.run([sys.executable, '-m', 'redprior_exrecon', *args, '--log', self.log,
                              star], capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, REDPRIOR_CORE_ONLY='1'))
        return out.returncode, out.stdout + out.stderr

    @classmethod
    def model(cls):
        if not hasattr(cls, '_model'):
            folder = tempfile.mkdtemp(prefix='redprior_model_')
            cls._model = write_placeholder_model(os.path.join(folder, 'smooth.keras'), BOX, PIX)
        return cls._model


class TestHookNeverHangs(Base):
    """Class 1: a worker that is there but does not answer is waited for a bounded time."""

    def _silent_worker(self):
        # a socket that accepts connections in the kernel but never answers (a stopped or
        # deadlocked worker looks exactly like this to the hook)
        path = os.path.join(self.dir, 'w.sock')
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(4)
        open(ready_file(path), 'w').close()
        self.addCleanup(server.close)
        return path

    def test_denoise_remote_gives_up_in_bounded_time(self):
        path = self._silent_worker()
        t0 = time.time()
        with self.assertRaises(WorkerUnavailable) as cm:
            denoise_remote(path, np.zeros((8, 8, 8), np.float32), PIX, timeout=2.0)
        self.assertLess(time.time() - t0, 15.0)
        self.assertIn('did not answer within 2 s', str(cm.exception))

    def test_hook_falls_back_when_the_worker_is_stopped(self):
        star, files = writeJob(self.dir)
        model = self.model()
        sock = os.path.join(self.dir, 'real.sock')
        worker = subprocess.Popen([sys.executable, '-m', 'redprior_worker', '--model', model,
                                   '--socket', sock], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        self.addCleanup(worker.kill)
        from redprior.core.denoiser.worker import wait_ready
        self.assertTrue(wait_ready(sock, worker, timeout=120))
        os.kill(worker.pid, signal.SIGSTOP)  # alive, but answers nothing
        try:
            rc, text = self.run_hook(star, '--mode', 'red', '--model', model, '--angpix', '2',
                                     '--worker', sock, '--worker-timeout', '3')
        finally:
            os.kill(worker.pid, signal.SIGCONT)
            stop(sock)
        self.assertEqual(rc, 0, text)
        self.assertIn('did not answer within 3 s', text)
        self.assertIn('loading the model in this process', text)
        rec = read_log(self.log)[-1]
        self.assertEqual(rec['lambda'], 1.0)
        self.assertTrue(rec['denoiser'].startswith('in-process'), rec)
        self.assertTrue(os.path.exists(star.replace('.star', '.mrc')))


class TestHookLosesNothing(Base):
    """Class 2b: RELION's inputs are removed only after the result and the log are written."""

    def test_failing_log_write_keeps_relions_files(self):
        star, files = writeJob(self.dir)
        os.makedirs(self.log)  # a folder where the log file should be: the write fails
        rc, text = self.run_hook(star, '--mode', 'gaussian', '--angpix', '2')
        self.assertEqual(rc, 1)
        self.assertIn('redprior_exrecon failed', text)
        for path in files.values():
            self.assertTrue(os.path.exists(path), path)

    def test_success_removes_them(self):
        star, files = writeJob(self.dir)
        rc, text = self.run_hook(star, '--mode', 'gaussian', '--angpix', '2')
        self.assertEqual(rc, 0, text)
        self.assertFalse(any(os.path.exists(p) for p in files.values()))


def _small_filesystem(size='1m'):
    """A mounted tmpfs of `size` (root only), or None where this machine does not allow it."""
    if not hasattr(os, 'geteuid') or os.geteuid() != 0:
        return None
    folder = tempfile.mkdtemp(prefix='redprior_full_')
    ok = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=' + size, 'tmpfs', folder],
                        capture_output=True).returncode == 0
    return folder if ok else None


class TestHookOnAFullDisk(Base):
    """Class 2b with a real full disk: the hook stops with a message and loses nothing."""

    def test_full_disk(self):
        folder = _small_filesystem()
        if folder is None:
            self.skipTest('needs root to mount a small tmpfs')
        self.addCleanup(subprocess.run, ['umount', folder])
        star, files = writeJob(folder)
        fd = os.open(os.path.join(folder, 'filler'), os.O_WRONLY | os.O_CREAT)
        try:  # use up what is left, unbuffered
            while True:
                os.write(fd, b'\0' * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        self.log = os.path.join(self.dir, 'log.jsonl')  # the log itself can be written
        rc, text = self.run_hook(star, '--mode', 'gaussian', '--angpix', '2')
        self.assertEqual(rc, 1)
        self.assertIn('No space left on device', text)
        self.assertTrue(all(os.path.exists(p) for p in files.values()))
        self.assertFalse(os.path.exists(star.replace('.star', '.mrc')))
        self.assertEqual([f for f in os.listdir(folder) if f.startswith('.tmp_')], [])


class TestHookChecksWhatItReads(Base):
    """Classes 3 and 7: inconsistent inputs stop with a message naming the problem."""

    def test_current_size_beyond_the_box(self):
        star, _ = writeJob(self.dir, current=2 * BOX)
        rc, text = self.run_hook(star, '--mode', 'gaussian')
        self.assertEqual(rc, 1)
        self.assertIn('current image size 32 must be between 1 and the box (16)', text)

    def test_negative_tau2(self):
        tau2 = np.ones(BOX // 2 + 1)
        tau2[3] = -1.0
        star, files = writeJob(self.dir, tau2=tau2)
        rc, text = self.run_hook(star, '--mode', 'gaussian')
        self.assertEqual(rc, 1)
        self.assertIn('tau2 must be finite and >= 0', text)
        self.assertTrue(all(os.path.exists(p) for p in files.values()))

    def test_missing_label(self):
        star, _ = writeJob(self.dir, drop=('rlnOriginalImageSize',))
        rc, text = self.run_hook(star, '--mode', 'gaussian')
        self.assertEqual(rc, 1)
        self.assertIn('lacks rlnOriginalImageSize', text)
        self.assertNotIn('Traceback', text)

    def test_truncated_map(self):
        path = os.path.join(self.dir, 'm.mrc')
        write_map(path, np.ones((8, 8, 8), np.float32), 1.0)
        with open(path, 'r+b') as fh:
            fh.truncate(os.path.getsize(path) - 100)
        with self.assertRaises(MapError) as cm:
            read_map(path)
        self.assertIn('truncated or its header is wrong', str(cm.exception))

    def test_nan_pixel_size(self):
        star, _ = writeJob(self.dir)
        rc, text = self.run_hook(star, '--mode', 'gaussian', '--angpix', 'nan')
        self.assertEqual(rc, 1)
        self.assertIn('pixel size is nan', text)


class TestRelion5Star(Base):
    """RELION 4 and 5 add rlnPixelSize and rlnParticleDiameter to the general block."""
    R5 = {'rlnPixelSize': 2.0, 'rlnParticleDiameter': 28.8}

    def test_pixel_size_is_taken_from_relion(self):
        star, _ = writeJob(self.dir, extra=self.R5)
        rc, text = self.run_hook(star, '--mode', 'red', '--model', self.model())
        self.assertEqual(rc, 0, text)
        rec = read_log(self.log)[-1]
        self.assertEqual(rec['lambda'], 1.0)
        # box 16 at 2 A/px: the FSC never drops below 0.143, so Nyquist (4 A) is said
        self.assertEqual(rec['resolution_text'], 'better than Nyquist (4.00 Å): never crosses 0.143')

    def test_contradicting_angpix_is_refused(self):
        star, _ = writeJob(self.dir, extra=self.R5)
        rc, text = self.run_hook(star, '--mode', 'red', '--model', self.model(), '--angpix', '3')
        self.assertEqual(rc, 1)
        self.assertIn('--angpix 3 but RELION says the maps are at 2 A/px', text)


class TestPriorStrengthNeverSilentlyWrong(Base):
    """Class 4: the program refuses what the protocol refuses, and says when lambda is 0."""

    def test_missing_fsc_column_in_cwred(self):
        star, _ = writeJob(self.dir, drop=('fsc',))
        rc, text = self.run_hook(star, '--mode', 'cwred', '--model', self.model(), '--angpix', '2')
        self.assertEqual(rc, 1)
        self.assertIn('no rlnGoldStandardFsc column', text)

    def test_nan_fsc_gives_lambda_0_and_says_so(self):
        star, _ = writeJob(self.dir, fsc=np.full(BOX // 2 + 1, np.nan))
        rc, text = self.run_hook(star, '--mode', 'cwred', '--model', self.model(), '--angpix', '2')
        self.assertEqual(rc, 0, text)
        rec = read_log(self.log)[-1]
        self.assertEqual(rec['lambda'], 0.0)
        self.assertIn('NaN values', rec['warning'])

    def test_program_refuses_what_the_form_refuses(self):
        star, _ = writeJob(self.dir)
        for args, text in ((['--mode', 'red', '--lambda', '-1'], 'Lambda must be a number >= 0'),
                           (['--mode', 'red', '--lambda', 'nan'], 'Lambda must be a number >= 0'),
                           (['--mode', 'cwred', '--cw-low', '4', '--cw-high', '9'],
                            'must be a positive number smaller than')):
            rc, out = self.run_hook(star, *args, '--model', self.model(), '--angpix', '2')
            self.assertEqual(rc, 1, args)
            self.assertIn(text, out)
            settings = dict(mode=args[1], pixel_size=2.0, model=self.model())
            if '--lambda' in args:
                settings['red_lambda'] = float(args[3])
            else:
                settings.update(cw_low=4.0, cw_high=9.0)
            self.assertTrue(any(text in p for p in prior_problems(PriorSettings(**settings))))


class TestBadDenoiserFoundBeforeLaunch(Base):
    """Classes 5 and 8: a damaged model is refused by the form's check, with the right words."""

    def test_corrupt_keras(self):
        bad = os.path.join(self.dir, 'bad.keras')
        with open(bad, 'wb') as fh:
            fh.write(b'not a zip')
        write_json(bad[:-6] + '.json', dict(box=64, pixel_size=2.0, normalisation='standardise'))
        problems = prior_problems(PriorSettings('cwred', 2.0, model=bad))
        self.assertEqual(len(problems), 1)
        self.assertIn('is not a Keras model file', problems[0])
        self.assertNotIn('does not exist', problems[0])

    def test_metadata_that_is_not_json(self):
        bad = os.path.join(self.dir, 'm.keras')
        open(bad, 'w').close()
        with open(bad[:-6] + '.json', 'w') as fh:
            fh.write('{box: 64')
        with self.assertRaises(DenoiserError) as cm:
            read_metadata(bad)
        self.assertIn('m.json is not a valid JSON file', str(cm.exception))

    def test_missing_model(self):
        problems = prior_problems(PriorSettings('red', 2.0, model='/nowhere/m.keras'))
        self.assertIn('/nowhere/m.keras does not exist', problems[0])

    def test_zero_pixel_size_is_not_a_resampling_ratio(self):
        problems = prior_problems(PriorSettings('cwred', 0.0, model=self.model()))
        self.assertEqual(len(problems), 1)
        self.assertIn('pixel size is 0.0', problems[0])
        self.assertEqual(prior_problems(PriorSettings('gaussian', 0.0))[0][:18],
                         'The pixel size is ')


class TestFormsRefuseWhatCannotWork(unittest.TestCase):
    """Class 6, in the core checks the forms call."""

    def test_simulation_requests(self):
        big = simulation_problems(2048, 0.1, 1000, snr=0.1, memory=24 * 2 ** 30)
        self.assertIn('GB of memory; this machine has 24.0 GB', big[0])
        self.assertIn('The SNR must be a positive number',
                      simulation_problems(64, 2.0, 100, snr=float('inf'))[0])
        self.assertIn('1 to 10,000,000', simulation_problems(64, 2.0, 10 ** 9, snr=0.1)[0])
        self.assertIn('pixel size must be a positive number',
                      simulation_problems(64, float('nan'), 100, snr=0.1)[0])
        self.assertEqual(simulation_problems(64, 2.0, 2000, snr=0.05), [])

    def test_consensus_without_common_particles(self):
        I = np.tile(np.eye(3), (3, 1, 1))
        a = consensus.PoseSet(np.array([1, 2, 3]), I, np.zeros((3, 2)), 'a')
        b = consensus.PoseSet(np.array([4, 5, 6]), I, np.zeros((3, 2)), 'b')
        with self.assertRaises(ValueError) as cm:
            consensus.consensus([a, b])
        self.assertIn('no particle id in common', str(cm.exception))


class TestReservedMapsByContent(unittest.TestCase):
    """Class 6: a demo map copied away from its simulation.json is still recognised."""

    def test_copied_demo_map_is_refused_and_an_unrelated_map_is_not(self):
        from redprior.core.io.shipped import DEMO_MODEL
        from redprior.core.simulation import structure
        from redprior.core.training_data.ground_truth import ground_truth
        from redprior.tests.synthetic import blobs
        folder = tempfile.mkdtemp(prefix='redprior_copied_')
        copied = os.path.join(folder, 'my_map.mrc')  # no simulation.json beside it
        write_map(copied, structure.potential_map(DEMO_MODEL, 48, 2.5), 2.5)
        entry = dict(kind='map', path=copied, source=copied, name='my_map.mrc')
        with self.assertRaises(ValueError) as cm:
            ground_truth(entry, 48, 2.5)
        self.assertIn('is the reserved structure 3HSY', str(cm.exception))
        other = os.path.join(folder, 'blobs.mrc')
        write_map(other, blobs(48, 3, k=40).astype(np.float32), 2.5)
        vol, pixel = ground_truth(dict(entry, path=other, source=other), 48, 2.5)
        self.assertEqual((vol.shape, pixel), ((48, 48, 48), 2.5))


class TestFiles(unittest.TestCase):
    """Class 9: written files get the modes the umask gives; broken JSON names its file."""

    def test_modes_follow_the_umask(self):
        folder = tempfile.mkdtemp(prefix='redprior_modes_')
        old = os.umask(0o022)
        try:
            write_map(os.path.join(folder, 'a.mrc'), np.zeros((4, 4, 4), np.float32))
            write_json(os.path.join(folder, 'a.json'), {'x': np.float32(1.5)})
        finally:
            os.umask(old)
        for name in ('a.mrc', 'a.json'):
            mode = stat.S_IMODE(os.stat(os.path.join(folder, name)).st_mode)
            self.assertEqual(mode, 0o644, name)
        self.assertEqual(read_json(os.path.join(folder, 'a.json')), {'x': 1.5})
        with open(os.path.join(folder, 'b.json'), 'w') as fh:
            fh.write('[1, 2')
        with self.assertRaises(JsonFileError) as cm:
            read_json(os.path.join(folder, 'b.json'))
        self.assertIn('b.json is not a valid JSON file', str(cm.exception))
