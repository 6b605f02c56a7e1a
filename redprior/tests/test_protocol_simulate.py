"""Plugin discovery, installation checks and the 'simulate particles' protocol end to end.

Run with `python -m pytest redprior/tests/test_protocol_simulate.py` (the root conftest sets
Scipion's environment) or, after `eval "$(python -m redprior_env)"`, with
`scipion test redprior.tests.test_protocol_simulate`.
"""
import os
import shutil
import stat
import tempfile
import unittest
from unittest import mock

import numpy as np

import pwem
from pwem.constants import ALIGN_PROJ
from pwem.convert import transformations as tfs
from pwem.protocols import ProtImportPdb
from pyworkflow.tests import BaseTest, setupTestProject
from pyworkflow.viewer import DESKTOP_TKINTER

import redprior
from redprior.core.io.shipped import DEMO_MODEL
from redprior import constants as C
from redprior.core.io import star_particles as particles_star
from redprior.core.simulation import structure
from redprior.core.geometry.euler import euler_to_matrix
from redprior.protocols import ProtRedPriorSimulate

BOX, PIXEL, N_PART, SNR = 40, 3.0, 200, 0.1
DEFOCUS = (5000.0, 20000.0)


def _wrap(deg):
    return (np.asarray(deg) + 180.0) % 360.0 - 180.0


def _relionAnglesFromTransform(matrix):
    """(rot, tilt, psi), shifts (px) of a Scipion ALIGN_PROJ matrix, tilt in [0, 180]."""
    inv = np.linalg.inv(matrix)          # Scipion stores the inverse for projections
    shifts = -tfs.translation_from_matrix(inv)
    rot, tilt, psi = -np.rad2deg(tfs.euler_from_matrix(inv, axes='szyz'))
    if tilt < 0:                          # same rotation, canonical tilt
        rot, tilt, psi = rot + 180.0, -tilt, psi + 180.0
    return np.array([rot, tilt, psi]), shifts


class TestRedPriorPlugin(unittest.TestCase):
    """Discovery through the entry point and RELION detection (no project needed)."""

    def test_discovered_through_entry_point(self):
        plugin = pwem.Domain.getPluginModule('redprior')
        self.assertIs(plugin, redprior)
        self.assertEqual(redprior.__version__, '0.1.0')
        self.assertIn('ProtRedPriorSimulate', pwem.Domain.getProtocols())
        self.assertIn('Kimanius2021', plugin._bibtex)

    def test_protocols_conf_in_gui_tree(self):
        # A syntax error in protocols.conf is only logged by Scipion and the section vanishes.
        from pyworkflow import Config
        from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig
        pwem.Domain.getPlugins()
        views = ProtocolTreeConfig.load(pwem.Domain, Config.SCIPION_PROTOCOLS)
        section = [c for c in views['Protocols SPA'].childs if c.text == 'redprior']
        self.assertEqual(len(section), 1)
        self.assertIn('ProtRedPriorSimulate', [c.value for c in section[0].childs])

    def test_installation_valid_here(self):
        self.assertEqual(redprior.Plugin.validateInstallation(), [])
        self.assertTrue(redprior.Plugin.getRelionProgram(C.RELION_REFINE_MPI))
        self.assertRegex(redprior.Plugin.getRelionVersion(), r'^\d+\.\d+')
        self.assertTrue(redprior.Plugin.getMpirun())

    def test_missing_relion_is_reported(self):
        with tempfile.TemporaryDirectory() as empty:
            # RELION_HOME given but empty: only $RELION_HOME/bin is searched.
            with mock.patch.dict(os.environ, {'RELION_HOME': empty, 'PATH': empty}):
                errors = redprior.Plugin.validateInstallation()
                self.assertIsNone(redprior.Plugin.getRelionProgram(C.RELION_REFINE_MPI))
            self.assertTrue(any('relion_refine_mpi' in e and 'RELION_HOME' in e
                                and 'apt-get install relion' in e for e in errors), errors)
            # No RELION_HOME and nothing on PATH.
            env = dict(os.environ, PATH=empty)
            env.pop('RELION_HOME', None)
            with mock.patch.dict(os.environ, env, clear=True):
                errors = redprior.Plugin.validateInstallation()
            self.assertTrue(any(e.startswith('relion_refine_mpi not found on PATH')
                                for e in errors), errors)
        # and the real environment is intact afterwards
        self.assertEqual(redprior.Plugin.validateInstallation(), [])

    def test_relative_relion_home_is_found_like_scipion_em_relion(self):
        # `scipion config` writes RELION_HOME relative to SCIPION_HOME (software/em/...)
        import subprocess
        import sys
        from pyworkflow import Config
        rel = os.path.join('software', 'em', 'relion-test-%d' % os.getpid())
        home = os.path.join(Config.SCIPION_HOME, rel)
        os.makedirs(os.path.join(home, 'bin'))
        try:
            real = shutil.which('relion_refine_mpi')
            os.symlink(real, os.path.join(home, 'bin', 'relion_refine_mpi'))
            code = ("import pwem, redprior, relion; pwem.Domain.getPlugins(); "
                    "print(redprior.Plugin.getRelionProgram('relion_refine_mpi')); "
                    "print(relion.Plugin.getHome('bin', 'relion_refine_mpi'))")
            out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                                 timeout=300, cwd=tempfile.gettempdir(),
                                 env=dict(os.environ, RELION_HOME=rel))
            ours, theirs = out.stdout.split()[-2:]
            expected = os.path.join(home, 'bin', 'relion_refine_mpi')
            self.assertEqual((ours, theirs), (expected, expected), out.stderr[-2000:])
        finally:
            shutil.rmtree(home)

    def test_relion_home_version_and_environ(self):
        with tempfile.TemporaryDirectory() as home:
            os.makedirs(os.path.join(home, 'bin'))
            for prog in ('relion_refine', 'relion_refine_mpi'):
                path = os.path.join(home, 'bin', prog)
                with open(path, 'w') as fh:
                    fh.write('#!/bin/sh\necho "RELION version: 4.0.1-commit-abc "\n')
                os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
            with mock.patch.dict(os.environ, {'RELION_HOME': home}):
                self.assertEqual(redprior.Plugin.getRelionVersion(), '4.0.1-commit-abc')
                self.assertEqual(redprior.Plugin.getRelionHome(), home)
                self.assertTrue(redprior.Plugin.getEnviron()['PATH']
                                .startswith(os.path.join(home, 'bin')))

    def test_core_only_skips_scipion(self):
        # RELION's hook imports the package with REDPRIOR_CORE_ONLY=1: no pwem, no Plugin.
        import subprocess
        import sys
        code = ("import sys, redprior, redprior.core.fourier; "
                "print('pwem' in sys.modules, hasattr(redprior, 'Plugin'))")
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                             env=dict(os.environ, REDPRIOR_CORE_ONLY='1'), timeout=120)
        self.assertEqual(out.stdout.split(), ['False', 'False'], out.stderr)


class TestRedPriorSimulate(BaseTest):
    """Import the shipped model and simulate 200 particles with CTF at SNR 0.1."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.protPdb = cls.newProtocol(ProtImportPdb, objLabel='import model',
                                      inputPdbData=ProtImportPdb.IMPORT_FROM_FILES,
                                      pdbFile=DEMO_MODEL, skipChimera=True)
        cls.launchProtocol(cls.protPdb)
        cls.prot = cls.newProtocol(ProtRedPriorSimulate, objLabel='simulate',
                                   inputAtomStruct=cls.protPdb.outputPdb,
                                   boxSize=BOX, pixelSize=PIXEL, numberOfParticles=N_PART,
                                   noiseMode=C.NOISE_BY_SNR, snr=SNR, doCtf=True,
                                   defocusMin=DEFOCUS[0], defocusMax=DEFOCUS[1], seed=3)
        cls.launchProtocol(cls.prot)
        cls.info = cls.prot.getResults()
        cls.truth = particles_star.read_particles(
            cls.prot._getExtraPath(C.SIM_PARTICLES_NAME + '.star'))

    def test_output_volumes(self):
        for vol in (self.prot.outputVolume, self.prot.outputInitialModel):
            self.assertEqual(vol.getDim(), (BOX, BOX, BOX))
            self.assertAlmostEqual(vol.getSamplingRate(), PIXEL)
            self.assertTrue(os.path.exists(vol.getFileName()))
        from redprior.core.fourier import fsc
        from redprior.core.io import mrc as mrcio
        truth, px = mrcio.read_map(self.prot.outputVolume.getFileName())
        init, _ = mrcio.read_map(self.prot.outputInitialModel.getFileName())
        self.assertAlmostEqual(px, PIXEL, places=3)
        # The model's mass is at the box centre, and the initial model keeps only < 30 A.
        com = np.array(np.unravel_index(np.argmax(truth), truth.shape))
        self.assertTrue(np.all(np.abs(com - BOX // 2) < BOX // 4), com)
        curve = fsc.fsc(truth, init)
        shells = fsc.shell_resolutions(BOX, PIXEL)
        self.assertGreater(curve[shells > 40].min(), 0.99)
        # beyond 20 A the initial model has (numerically) no power left
        from redprior.core.fourier.grid import shell_index
        high = shell_index(BOX) >= BOX * PIXEL / 20.0
        ratio = (np.abs(np.fft.rfftn(init)[high]) ** 2).sum() / \
            (np.abs(np.fft.rfftn(truth)[high]) ** 2).sum()
        self.assertLess(ratio, 1e-6)

    def test_output_particles(self):
        parts = self.prot.outputParticles
        self.assertSetSize(parts, N_PART)
        self.assertEqual(parts.getDim(), (BOX, BOX, 1))
        self.assertAlmostEqual(parts.getSamplingRate(), PIXEL)
        self.assertEqual(parts.getAlignment(), ALIGN_PROJ)
        self.assertTrue(parts.hasCTF())
        acq = parts.getAcquisition()
        self.assertAlmostEqual(acq.getVoltage(), 300.0)
        self.assertAlmostEqual(acq.getSphericalAberration(), 2.7)
        self.assertAlmostEqual(acq.getAmplitudeContrast(), 0.1)
        first = parts.getFirstItem()
        self.assertTrue(os.path.exists(first.getFileName()), first.getFileName())
        self.assertEqual(first.getIndex(), 1)

    def test_measured_snr(self):
        self.assertEqual(self.info['particles'], N_PART)
        self.assertEqual(self.info['box'], BOX)
        self.assertAlmostEqual(self.info['snr_requested'], SNR)
        self.assertLess(abs(self.info['snr_measured'] / SNR - 1.0), 0.10, self.info)
        # and the noise really is that strong in the written stack
        from redprior.core.io import mrc as mrcio
        stack, _ = mrcio.read_map(self.prot._getExtraPath(C.SIM_PARTICLES_NAME + '.mrcs'))
        self.assertEqual(stack.shape, (N_PART, BOX, BOX))
        total_var = float(stack.astype(np.float64).var(axis=(1, 2)).mean())
        noise_var = self.info['noise_sigma'] ** 2
        self.assertLess(abs((total_var - noise_var) / noise_var / SNR - 1.0), 0.10)

    def test_true_poses_recovered(self):
        for i, part in enumerate(self.prot.outputParticles.iterItems(orderBy='id')):
            if i == 10:
                break
            angles, shifts = _relionAnglesFromTransform(part.getTransform().getMatrix())
            true = np.array([self.truth['rot'][i], self.truth['tilt'][i], self.truth['psi'][i]])
            np.testing.assert_array_less(np.abs(_wrap(angles - true)), 0.01)
            # same rotation matrix in RELION's convention
            np.testing.assert_allclose(euler_to_matrix(*angles), euler_to_matrix(*true),
                                       atol=2e-4)
            np.testing.assert_allclose(shifts[:2] * PIXEL, [self.truth['shift_x_A'][i],
                                                            self.truth['shift_y_A'][i]],
                                       atol=1e-3)

    def test_relion_writer_round_trip(self):
        # What a RELION-based refine protocol will hand to relion_refine.
        from relion.convert import writeSetOfParticles
        out = os.path.abspath(self.proj.getTmpPath('roundtrip'))
        os.makedirs(out, exist_ok=True)
        star = os.path.join(out, 'written.star')
        writeSetOfParticles(self.prot.outputParticles, star, outputDir=out,
                            alignType=ALIGN_PROJ)
        back = particles_star.read_particles(star)
        for key in ('rot', 'tilt', 'psi'):
            self.assertEqual(len(back[key]), N_PART)
        R1 = euler_to_matrix(back['rot'], back['tilt'], back['psi'])
        R0 = euler_to_matrix(self.truth['rot'], self.truth['tilt'], self.truth['psi'])
        np.testing.assert_allclose(R1, R0, atol=2e-4)
        np.testing.assert_allclose(back['defocus_u'], self.truth['defocus_u'], atol=0.1)
        self.assertAlmostEqual(back['pixel_size'], PIXEL)

    def test_ctf_in_range(self):
        du, dv = [], []
        for part in self.prot.outputParticles.iterItems():
            ctf = part.getCTF()
            du.append(ctf.getDefocusU())
            dv.append(ctf.getDefocusV())
        du, dv = np.array(du), np.array(dv)
        self.assertTrue(np.all(du >= dv))
        # mean defocus is uniform in the range; astigmatism adds at most 1 % on each side
        self.assertGreaterEqual(dv.min(), DEFOCUS[0] * 0.99)
        self.assertLessEqual(du.max(), DEFOCUS[1] * 1.01)
        self.assertGreater(np.ptp((du + dv) / 2), 0.5 * (DEFOCUS[1] - DEFOCUS[0]))
        np.testing.assert_allclose(np.sort(du), np.sort(self.truth['defocus_u']), atol=0.1)

    def test_volume_input_scale_no_ctf(self):
        # Volume source (the ground truth above), noise by scale factor, no CTF.
        from redprior.core.simulation import particles as simulate
        scale = 0.5
        prot = self.newProtocol(ProtRedPriorSimulate, objLabel='simulate from volume',
                                inputSource=C.SOURCE_VOLUME,
                                inputVolume=self.prot.outputVolume, numberOfParticles=50,
                                noiseMode=C.NOISE_BY_SCALE, scaleFactor=scale, doCtf=False,
                                maxShift=3.0, seed=5)
        self.launchProtocol(prot)
        info = prot.getResults()
        self.assertEqual((info['box'], info['pixel_size']), (BOX, PIXEL))
        self.assertIsNone(info['snr_requested'])
        self.assertAlmostEqual(info['noise_sigma'], 1.0)
        parts = prot.outputParticles
        self.assertSetSize(parts, 50)
        self.assertFalse(parts.hasCTF())
        self.assertEqual(parts.getAlignment(), ALIGN_PROJ)
        self.assertEqual(prot.outputVolume.getDim(), (BOX, BOX, BOX))
        # measured SNR agrees with the prediction from the scale factor (50 vs 200 draws)
        from redprior.core.io import mrc as mrcio
        vol, _ = mrcio.read_map(prot.outputVolume.getFileName())
        expected = simulate.snr_for_scale(vol, PIXEL, scale)
        self.assertLess(abs(info['snr_measured'] / expected - 1.0), 0.25,
                        (info['snr_measured'], expected))
        truth = particles_star.read_particles(prot._getExtraPath(C.SIM_PARTICLES_NAME + '.star'))
        shifts = [_relionAnglesFromTransform(p.getTransform().getMatrix())[1][:2] * PIXEL
                  for p in parts.iterItems(orderBy='id')]
        np.testing.assert_allclose(np.array(shifts),
                                   np.stack([truth['shift_x_A'], truth['shift_y_A']], 1),
                                   atol=1e-3)
        self.assertGreater(np.abs(truth['shift_x_A']).max(), 1.0)
        self.assertIn('CTF: none', '\n'.join(prot.summary()))

    def test_summary_methods(self):
        summary = '\n'.join(self.prot.summary())
        self.assertIn('Measured SNR', summary)
        self.assertIn('%d particles' % N_PART, summary)
        self.assertIn('box %d px' % BOX, summary)
        self.assertTrue(self.prot.methods())
        self.assertIn('Kimanius2021', self.prot._citations())

    def test_validate_box_too_small(self):
        summary = structure.structure_summary(structure.read_structure(DEMO_MODEL))
        need = structure.min_box_for(summary['max_radius_A'], PIXEL)
        small = need - 4
        prot = self.newProtocol(ProtRedPriorSimulate, inputAtomStruct=self.protPdb.outputPdb,
                                boxSize=small, pixelSize=PIXEL)
        errors = prot.validate()
        self.assertTrue(any('at least %d px' % need in e and 'box of %d px' % small in e
                            for e in errors), errors)
        ok = self.newProtocol(ProtRedPriorSimulate, inputAtomStruct=self.protPdb.outputPdb,
                              boxSize=need, pixelSize=PIXEL)
        self.assertEqual(ok.validate(), [])
        for kwargs, text in ((dict(boxSize=BOX + 1), 'even'),
                             (dict(snr=0.0), 'SNR must be a positive number'),
                             (dict(defocusMin=9000.0, defocusMax=8000.0), 'Defocus range')):
            bad = self.newProtocol(ProtRedPriorSimulate,
                                   inputAtomStruct=self.protPdb.outputPdb,
                                   **dict(dict(boxSize=BOX, pixelSize=PIXEL), **kwargs))
            self.assertTrue(any(text in e for e in bad.validate()), (kwargs, bad.validate()))

    def test_viewer_saves_pngs(self):
        from redprior.viewers import RedPriorSimulateViewer
        viewers = pwem.Domain.findViewers(self.prot, DESKTOP_TKINTER)
        self.assertIn(RedPriorSimulateViewer, viewers)
        viewer = RedPriorSimulateViewer(project=self.proj, protocol=self.prot)
        viewer.setProtocol(self.prot)
        out = os.path.abspath(self.proj.getTmpPath('viewer'))
        os.makedirs(out, exist_ok=True)
        expected = {'displayGallery': (16, 1), 'displaySlices': (6, 1), 'displaySnr': (2, 0)}
        for key, (n_axes, images_per_axis) in expected.items():
            plotters = viewer._getVisualizeDict()[key]()
            self.assertEqual(len(plotters), 1, key)
            fig = plotters[0].getFigure()
            self.assertEqual(len(fig.axes), n_axes, key)
            self.assertTrue(all(len(ax.images) == images_per_axis for ax in fig.axes), key)
            png = os.path.join(out, key + '.png')
            plotters[0].savefig(png)
            plotters[0].close()
            self.assertTrue(os.path.exists(png) and os.path.getsize(png) > 1000, png)
        # the spectral SNR averages back to the measured SNR (Parseval, white noise)
        freq, ssnr = viewer.spectralSnr(self.info)
        self.assertEqual(len(freq), BOX // 2 - 1)
        self.assertTrue(np.all(np.isfinite(ssnr)))
        paths = viewer.saveFigures(os.path.join(out, 'all'))
        self.assertEqual([os.path.basename(p) for p in paths],
                         ['gallery.png', 'slices.png', 'snr.png'])

    def test_noise_wizard(self):
        from redprior.wizards import RedPriorNoiseWizard
        self.assertIn('snr', pwem.Domain.findWizards(self.prot, DESKTOP_TKINTER))

        class FakeForm:
            def __init__(self, protocol):
                self.protocol, self.vars, self.messages = protocol, {}, []

            def setVar(self, name, value):
                self.vars[name] = value

            def showInfo(self, msg, *args):
                self.messages.append(msg)

            def showError(self, msg, *args):
                raise AssertionError(msg)

        form = FakeForm(self.prot)
        RedPriorNoiseWizard().show(form, 'snr')
        scale = form.vars['scaleFactor']
        self.assertGreater(scale, 0)
        prot = self.newProtocol(ProtRedPriorSimulate, inputAtomStruct=self.protPdb.outputPdb,
                                boxSize=BOX, pixelSize=PIXEL, doCtf=True,
                                defocusMin=DEFOCUS[0], defocusMax=DEFOCUS[1],
                                noiseMode=C.NOISE_BY_SCALE, scaleFactor=scale)
        form2 = FakeForm(prot)
        RedPriorNoiseWizard().show(form2, 'scaleFactor')
        self.assertAlmostEqual(form2.vars['snr'] / SNR, 1.0, places=4)
        self.assertIn('SNR', form2.messages[0])


if __name__ == '__main__':
    unittest.main()
