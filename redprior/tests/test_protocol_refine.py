"""'CW-RED 3D auto-refine' end to end: simulate -> real relion_refine_mpi with our hook.

Tiny data (box 40 at 3 A/px, 400 particles, SNR 1, no CTF) so that two auto-refines (RED at
pad 2, CW-RED at pad 1) finish in a few minutes on 2 cores.
Run with `python -m pytest redprior/tests/test_protocol_refine.py` or, with the environment
of redprior_env exported, `scipion test redprior.tests.test_protocol_refine`.
"""
import math
import os

import numpy as np

from pwem.protocols import ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject

from redprior.core.prior import schedule
from redprior.core.prior.history import read_log
from redprior.core.fourier.fsc import fsc, read_resolution
from redprior.core.io.mrc import read_map, write_map
from redprior.protocols import ProtRedPriorRefine
from redprior.tests.common import simulateDemoParticles
from redprior.protocols.protocol_refine import PRIOR_CWRED, PRIOR_GAUSSIAN, PRIOR_RED

BOX, PIXEL, N_PART, SNR = 40, 3.0, 400, 1.0


class TestRedPriorRefine(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.protPdb, cls.sim = simulateDemoParticles(cls, BOX, PIXEL, N_PART, SNR,
                                                     doCtf=False, seed=5)

    def _refine(self, label, mode, pad, **kwargs):
        prot = self.newProtocol(ProtRedPriorRefine, objLabel=label,
                                inputParticles=self.sim.outputParticles,
                                referenceVolume=self.sim.outputInitialModel,
                                priorMode=mode, padding=pad - 1, numberOfMpi=3, **kwargs)
        self.launchProtocol(prot)
        return prot

    def _checkOutputs(self, prot):
        vol = prot.outputVolume
        self.assertEqual(vol.getDim(), (BOX, BOX, BOX))
        self.assertAlmostEqual(vol.getSamplingRate(), PIXEL, places=3)
        self.assertEqual(prot.outputParticles.getSize(), N_PART)
        summary = prot.getResults()
        self.assertTrue(math.isfinite(summary['final_resolution']))
        self.assertLess(summary['final_resolution'], 15.0)
        # the map must resemble the truth (FSC to ground truth at 0.5 better than 15 A)
        gt, _ = read_map(self.sim.outputVolume.getFileName())
        m, _ = read_map(vol.getFileName())
        res05 = read_resolution(fsc(gt, m), BOX, PIXEL, 0.5).bound_A
        self.assertLess(res05, 15.0)
        return summary

    def test_red_pad2(self):
        prot = self._refine('RED pad 2', PRIOR_RED, 2, redLambda=0.5, halfViews=True)
        summary = self._checkOutputs(prot)
        log = read_log(prot.getExreconLog())
        self.assertGreaterEqual(len(log), 6)
        self.assertTrue(all(r['lambda'] == 0.5 and r['mode'] == 'red' and r['pad'] == 2.0
                            and r['half_views'] == 'rotated' for r in log))
        self.assertIn('the halves denoised in different frames', prot.summary()[0])
        # two halves per iteration while they are separate, one joined call at the end
        halves = [r['half'] for r in log]
        self.assertEqual(halves[-1], 0)
        self.assertEqual(sorted(halves[:2]), [1, 2])
        self.assertEqual(summary['method'], 'red')
        self.assertIn('lambda up to 0.50', summary['resolution_caution'])
        self.assertIn(summary['resolution_caution'], prot.summary())
        # RELION's large files were removed after each call
        leftovers = [f for f in os.listdir(prot._getExtraPath()) if f.endswith('_weight.mrc')]
        self.assertEqual(leftovers, [])
        # the viewer renders its figures headless
        from redprior.viewers.viewer_refine import RedPriorRefineViewer, iteration_table
        viewer = RedPriorRefineViewer(project=self.proj, protocol=prot)
        pngs = viewer.saveFigures(prot._getExtraPath('figures'))
        self.assertTrue(all(os.path.getsize(p) > 1000 for p in pngs))
        rows = iteration_table(prot._getExtraPath())
        self.assertEqual(len(rows), summary['iterations'] - 1)  # the joined final call has no half model
        self.assertEqual(len(viewer.plotSlices().axes), 9)

    def test_cwred_pad1(self):
        prot = self._refine('CW-RED pad 1', PRIOR_CWRED, 1, cwLow=10.0, cwHigh=6.5,
                            halfViews=False, lowpassReference=True)
        self._checkOutputs(prot)
        log = read_log(prot.getExreconLog())
        self.assertEqual({r['half_views'] for r in log}, {'same'})
        self.assertIn('both halves denoised in one frame', prot.summary()[0])
        # each half's map that crossed was cut at its shell; the joined final map never
        self.assertIn("each half's reference low-passed at the resolution", prot.summary()[0])
        cut = [r for r in log if 'lowpass_shell' in r]
        self.assertGreaterEqual(len(cut), 4)
        self.assertTrue(all(r['half'] in (1, 2) and r['resolution'] is not None for r in cut))
        self.assertNotIn('lowpass_shell', log[-1])
        self.assertEqual(log[-1]['half'], 0)
        for r in log:
            res = r['resolution'] if r['resolution'] is not None else float('inf')
            self.assertAlmostEqual(r['lambda'], schedule.cwred_lambda(res, 10.0, 6.5), places=6)
        lams = [r['lambda'] for r in log]
        # the ramp between 10 and 6.5 A is exercised: some calls with 0 < lambda < 1
        self.assertTrue(any(0.0 < x < 1.0 for x in lams), lams)
        self.assertGreater(len(set(round(x, 6) for x in lams)), 1)

    def test_validation_errors(self):
        # reference with another box and pixel size, and one with NaN
        gt, _ = read_map(self.sim.outputVolume.getFileName())
        folder = os.path.abspath(self.proj.getTmpPath())
        os.makedirs(folder, exist_ok=True)
        write_map(os.path.join(folder, 'small.mrc'), gt[4:-4, 4:-4, 4:-4], 2.0)
        bad = gt.copy()
        bad[0, 0, 0] = np.nan
        write_map(os.path.join(folder, 'nan.mrc'), bad, PIXEL)
        imp = self.newProtocol(ProtImportVolumes, filesPath=folder, filesPattern='small.mrc',
                               samplingRate=2.0)
        self.launchProtocol(imp)
        prot = self.newProtocol(ProtRedPriorRefine, inputParticles=self.sim.outputParticles,
                                referenceVolume=imp.outputVolume, numberOfMpi=2)
        errors = '\n'.join(prot.validate())
        self.assertIn('Particle box (40 px) differs from the reference box (32 px)', errors)
        self.assertIn('Pixel size mismatch', errors)
        self.assertIn('at least 3 MPI', errors)
        imp2 = self.newProtocol(ProtImportVolumes, filesPath=folder, filesPattern='nan.mrc',
                                samplingRate=PIXEL)
        self.launchProtocol(imp2)
        prot2 = self.newProtocol(ProtRedPriorRefine, inputParticles=self.sim.outputParticles,
                                 referenceVolume=imp2.outputVolume, priorMode=PRIOR_GAUSSIAN)
        self.assertIn('NaN', '\n'.join(prot2.validate()))
