"""'resolution and validation report' end to end, without any RELION refinement.

The inputs have known answers: a simulated ground truth (box 40, 3 A/px, 100 particles), half-maps
made from it with independent noise (honest) or with shared invented detail beyond 15 A
(overfitted), and a copy of the true particles whose poses are perturbed by known rotations and
shifts. Run with `python -m pytest redprior/tests/test_protocol_validate.py`.
"""
import os

import numpy as np

import pwem
from pwem.objects import SetOfParticles
from pwem.protocols import ProtImportMask, ProtImportParticles, ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject
from pyworkflow.viewer import DESKTOP_TKINTER

from redprior.core.geometry import rotations as angles
from redprior.core.fourier import filters as fourier
from redprior.core.io import mrc as mrcio
from redprior.core.geometry.masks import spherical_mask
from redprior.tests.common import simulateDemoParticles
from redprior.protocols import ProtRedPriorValidate

BOX, PIXEL, N_PART = 40, 3.0, 100
KEEP = 80                 # refined set: the first 80 particles only (matched by id)
SHIFT_ERR_PX = 1.0        # every refined particle is shifted by 1 px in a random direction
MAX_ANGLE_ERR = 10.0      # and rotated by a known angle in [0, 10] deg


def _bfactor(vol, B):
    s2 = (np.arange(BOX) / (BOX * PIXEL)) ** 2
    return fourier.shell_filter(vol, np.exp(-B * s2 / 4.0))


class TestRedPriorValidate(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.protPdb, cls.sim = simulateDemoParticles(cls, BOX, PIXEL, N_PART, 1.0,
                                                     doCtf=False, seed=11)
        cls.data = os.path.abspath('inputData')
        os.makedirs(cls.data, exist_ok=True)
        cls._writeMaps()
        cls.honest = cls._importHalves('honest')
        cls.overfit = cls._importHalves('overfit')
        cls.perturbed = cls._importPerturbed()

    # ------------------------------------------------------------------ inputs
    @classmethod
    def _writeMaps(cls):
        gt, _ = mrcio.read_map(cls.sim.outputVolume.getFileName())
        rng = np.random.default_rng(0)
        # honest: the truth with a B-factor fall-off plus independent noise in each half
        signal = _bfactor(gt, 800.0)
        sigma = 0.15 * gt.std()
        honest = [signal + rng.normal(0, sigma, gt.shape) for _ in range(2)]
        # overfitted: halves agree on invented detail beyond 15 A that the truth lacks
        fake = fourier.shell_filter(rng.normal(0, 1, gt.shape),
                                    (np.arange(BOX) > BOX * PIXEL / 15.0) * 1.0)
        fake *= 2 * sigma / fake.std()
        low = fourier.lowpass(signal, PIXEL, 15.0)
        overfit = [low + fake + rng.normal(0, 0.3 * sigma, gt.shape) for _ in range(2)]
        for name, halves in (('honest', honest), ('overfit', overfit)):
            for i, h in enumerate(halves):
                mrcio.write_map(cls._path('%s_half%d.mrc' % (name, i + 1)), h, PIXEL)
            mrcio.write_map(cls._path('%s.mrc' % name), 0.5 * (halves[0] + halves[1]), PIXEL)
        mrcio.write_map(cls._path('mask.mrc'), spherical_mask(BOX, 15, 3), PIXEL)
        mrcio.write_map(cls._path('small.mrc'), np.zeros((32,) * 3, np.float32), PIXEL)

    @classmethod
    def _path(cls, name):
        return os.path.join(cls.data, name)

    @classmethod
    def _importHalves(cls, name, pixel=PIXEL):
        prot = cls.newProtocol(ProtImportVolumes, objLabel='import %s' % name,
                               filesPath=cls._path(name + '.mrc'), samplingRate=pixel,
                               setHalfMaps=True, half1map=cls._path(name + '_half1.mrc'),
                               half2map=cls._path(name + '_half2.mrc'))
        cls.launchProtocol(prot)
        return prot.outputVolume

    @classmethod
    def _importPerturbed(cls):
        """Copy of the first KEEP true particles with known pose errors, imported from sqlite."""
        rng = np.random.default_rng(1)
        cls.angleErr = rng.uniform(0, MAX_ANGLE_ERR, KEEP)
        axes = rng.normal(size=(KEEP, 3))
        D = angles.axis_angle_matrix(axes, cls.angleErr)
        phi = rng.uniform(0, 2 * np.pi, KEEP)
        delta = SHIFT_ERR_PX * np.stack([np.cos(phi), np.sin(phi)], axis=1)
        sqlite = cls._path('perturbed.sqlite')
        if os.path.exists(sqlite):
            os.remove(sqlite)
        out = SetOfParticles(filename=sqlite)
        src = cls.sim.outputParticles
        out.copyInfo(src)
        for i, part in enumerate(src.iterItems(orderBy='id')):
            if i == KEEP:
                break
            new = part.clone()
            T = np.linalg.inv(part.getTransform().getMatrix())  # [A | -shift_px]
            T[:3, :3] = T[:3, :3] @ D[i]                          # refined pose A D
            T[:2, 3] -= delta[i]                                  # refined shift + delta
            new.getTransform().setMatrix(np.linalg.inv(T))
            out.append(new)
        out.write()
        out.close()
        prot = cls.newProtocol(ProtImportParticles, objLabel='import perturbed',
                               importFrom=ProtImportParticles.IMPORT_FROM_SCIPION,
                               sqliteFile=sqlite, samplingRate=PIXEL)
        cls.launchProtocol(prot)
        return prot.outputParticles

    def _validate(self, label, **kwargs):
        prot = self.newProtocol(ProtRedPriorValidate, objLabel=label, **kwargs)
        self.launchProtocol(prot)
        return prot

    # ------------------------------------------------------------------ tests
    def test_honest_with_truth_and_poses(self):
        prot = self._validate('honest', inputVolume=self.honest,
                              groundTruth=self.sim.outputVolume,
                              trueParticles=self.sim.outputParticles,
                              refinedParticles=self.perturbed)
        res = prot.getResults()
        c = res['curves']
        self.assertEqual(set(c), {'half_unmasked', 'half_masked', 'half_random',
                                  'half_corrected', 'gt_masked', 'gt_unmasked', 'gt_expected'})
        self.assertSetSize(prot.outputFSCs, 7)
        labels = [f.getObjLabel() for f in prot.outputFSCs]
        self.assertIn('map vs ground truth, masked', labels)
        x, y = prot.outputFSCs.getFirstItem().getData()
        self.assertEqual(len(x), BOX // 2 + 1)
        self.assertAlmostEqual(float(x[-1]), 1.0 / (2 * PIXEL))
        # pwem's FSC viewer reads the resolution from the objects: the same number and the
        # same "never crosses" as the report, never beyond Nyquist
        for fsc in prot.outputFSCs:
            self.assertEqual(type(fsc).__name__, 'RedPriorFSC')
            key = [k for k, v in c.items() if v['label'] == fsc.getObjLabel()][0]
            r = c[key]['resolution']['0.143']
            shown = fsc.calculateResolution(0.143)
            if r['crossed'] and r['resolution_A']:
                self.assertAlmostEqual(float(shown), r['resolution_A'], places=2)
            elif not r['crossed']:
                self.assertEqual(shown, 'better than %.2f ' % (2 * PIXEL))
        # the half-map resolution is what the truth supports (within a shell), mid-range
        half = c['half_corrected']['resolution']['0.143']
        truth = c['gt_masked']['resolution']['0.5']
        self.assertTrue(half['crossed'] and truth['crossed'])
        self.assertLessEqual(abs(half['shell'] - truth['shell']), 1)
        self.assertTrue(6.5 < half['resolution_A'] < 15.0, half)
        self.assertFalse(res['overestimation']['overestimated'], res['overestimation'])
        self.assertEqual(res['mask']['source'], 'auto (ground truth)')
        self.assertTrue(os.path.exists(prot._getExtraPath('auto_mask.mrc')))

        # pose errors are exactly the perturbation, on the KEEP particles in common
        poses = res['poses']
        self.assertEqual(poses['n'], KEEP)
        np.testing.assert_allclose(poses['angular_errors'], self.angleErr, atol=1e-3)
        for p in (50, 75, 90, 95):
            self.assertAlmostEqual(poses['angular']['p%d' % p],
                                   np.percentile(self.angleErr, p), places=3)
        np.testing.assert_allclose(poses['shift_errors'], SHIFT_ERR_PX * PIXEL, atol=1e-3)
        self.assertEqual(poses['hand'], 'same')

        # report files
        for name in ('report.html', 'report.pdf', 'fsc.png', 'pose_errors.png',
                     'validation.json'):
            path = prot._getExtraPath(name)
            self.assertTrue(os.path.exists(path) and os.path.getsize(path) > 1000, path)
        with open(prot._getExtraPath('report.pdf'), 'rb') as fh:
            self.assertEqual(fh.read(4), b'%PDF')
        summary = '\n'.join(prot.summary())
        self.assertIn('Gold-standard', summary)
        self.assertIn('Overestimation: consistent', summary)
        self.assertIn('Angular error', summary)
        self.assertTrue(prot.methods())
        self._checkViewer(prot)

    def _checkViewer(self, prot):
        from redprior.viewers import RedPriorValidateViewer
        self.assertIn(RedPriorValidateViewer, pwem.Domain.findViewers(prot, DESKTOP_TKINTER))
        viewer = RedPriorValidateViewer(project=self.proj, protocol=prot)
        viewer.setProtocol(prot)
        plotters = viewer._getVisualizeDict()['displayFsc']()
        self.assertEqual(len(plotters), 1)
        self.assertEqual(len(plotters[0].getFigure().axes[0].lines), 7 + 3)  # + 3 hlines
        out = os.path.abspath(self.proj.getTmpPath('viewer'))
        paths = viewer.saveFigures(out)
        self.assertEqual([os.path.basename(p) for p in paths],
                         ['fsc.png', 'fsc_scipion.png', 'pose_errors.png'])
        for path in paths:
            self.assertGreater(os.path.getsize(path), 1000, path)

    def test_overfitted_against_truth(self):
        prot = self._validate('overfit vs truth', inputVolume=self.overfit,
                              groundTruth=self.sim.outputVolume)
        res = prot.getResults()
        over = res['overestimation']
        self.assertTrue(over['overestimated'], over)
        self.assertGreater(over['checks'][0]['shell_excess'], 3)
        self.assertIn('never crosses', res['curves']['half_corrected']['resolution']['0.143']
                      ['text'])
        self.assertNotIn('poses', res)
        self.assertIn('Overestimation: OVERESTIMATED', '\n'.join(prot.summary()))

    def test_overfitted_against_unregularised(self):
        protMask = self.newProtocol(ProtImportMask, maskPath=self._path('mask.mrc'),
                                    samplingRate=PIXEL)
        self.launchProtocol(protMask)
        prot = self._validate('overfit vs unregularised', inputVolume=self.overfit,
                              inputMask=protMask.outputMask, randomiseFrom=20.0,
                              unregHalf1=self._path('honest_half1.mrc'),
                              unregHalf2=self._path('honest_half2.mrc'))
        res = prot.getResults()
        self.assertEqual(res['mask']['source'], 'given')
        self.assertAlmostEqual(res['randomise_from_A'], 20.0)
        self.assertIn('unreg_corrected', res['curves'])
        self.assertTrue(res['overestimation']['overestimated'])
        self.assertEqual(res['overestimation']['checks'][0]['against'],
                         'the unregularised half-maps')
        self.assertFalse(os.path.exists(prot._getExtraPath('auto_mask.mrc')))

    def test_validation_messages(self):
        def errors(**kwargs):
            return '\n'.join(self.newProtocol(ProtRedPriorValidate, **kwargs).validate())

        self.assertEqual(errors(inputVolume=self.honest, groundTruth=self.sim.outputVolume), '')
        msg = errors(inputVolume=self.sim.outputVolume)
        self.assertIn('no half-maps', msg)
        self.assertIn('Set half maps', msg)
        # box mismatch (32 px mask) and pixel-size mismatch (ground truth at 2.5 A/px)
        small = self.newProtocol(ProtImportMask, maskPath=self._path('small.mrc'),
                                 samplingRate=PIXEL)
        self.launchProtocol(small)
        msg = errors(inputVolume=self.honest, inputMask=small.outputMask)
        self.assertIn('Box mismatch: the mask is 32x32x32 px', msg)
        self.assertIn('to 40 px', msg)
        wrongPixel = self.newProtocol(ProtImportVolumes, filesPath=self._path('honest.mrc'),
                                      samplingRate=2.5)
        self.launchProtocol(wrongPixel)
        msg = errors(inputVolume=self.honest, groundTruth=wrongPixel.outputVolume)
        self.assertIn('Pixel size mismatch: the ground truth is 2.5 A/px', msg)
        self.assertIn('Rescale the ground truth', msg)
        self.assertIn('Give both', errors(inputVolume=self.honest,
                                          trueParticles=self.sim.outputParticles))
        self.assertIn('not supported', errors(inputVolume=self.honest, symmetry='C2v'))
        self.assertIn('unregularised', errors(inputVolume=self.honest,
                                              unregHalf1=self._path('honest_half1.mrc')))
