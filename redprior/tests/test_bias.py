"""Prior-bias test: the verdict on constructed cases, and the protocol on a real refinement."""
import json
import os
import tempfile
import unittest

import numpy as np
import pytest
from pyworkflow.tests import BaseTest, setupTestProject

from redprior.core.fourier import filters
from redprior.core.io.star_particles import write_particles
from redprior.core.validation import bias
from redprior.protocols import ProtRedPriorBiasTest, ProtRedPriorRefine
from redprior.protocols.protocol_refine import PRIOR_RED
from redprior.tests.common import simulateDemoParticles
from redprior.tests.test_core_validation import pseudo_protein


class TestBiasMeasure(unittest.TestCase):
    box, pixel = 40, 2.0

    def setUp(self):
        self.truth = pseudo_protein(self.box)
        self.rng = np.random.default_rng(2)

    def test_noise_holds_no_structure_and_the_truth_does(self):
        noise = self.rng.normal(size=(self.box,) * 3)
        low = filters.lowpass(self.truth, self.pixel, 30.0) + 0.05 * noise
        r = bias.invented_structure(low, self.truth, self.pixel, 30.0)
        self.assertFalse(r['invented'])
        self.assertLess(r['mean_fsc'], bias.INVENTED_FSC)
        # the same low-pass map with the real detail put back beyond 30 A: invented
        r2 = bias.invented_structure(self.truth + 0.05 * noise, self.truth, self.pixel, 30.0)
        self.assertTrue(r2['invented'])
        self.assertGreater(r2['mean_fsc'], 0.5)
        overall, lines = bias.verdict({('noise', 'red'): r2, ('noise', 'Gaussian'): r})
        self.assertTrue(overall.startswith('FAIL'))
        self.assertIn('pure noise, red prior: STRUCTURE APPEARED beyond 30.0 Å', lines[1])
        self.assertTrue(bias.verdict({('noise', 'red'): r})[0].startswith('PASS'))

    def test_controls_keep_what_they_should(self):
        images = self.rng.normal(size=(20, 32, 32)).astype(np.float32) + 3.0
        noise = bias.noise_like(images, self.rng)
        self.assertAlmostEqual(float(noise.mean()), float(images.mean()), delta=0.05)
        self.assertAlmostEqual(float(noise.std()), float(images.std()), delta=0.05)
        ph = bias.phase_randomised(images, 2.0, 8.0, self.rng)
        a, b = np.fft.rfft2(images), np.fft.rfft2(ph)
        np.testing.assert_allclose(np.abs(a), np.abs(b), rtol=1e-4, atol=1e-3)
        # below 8 A (shell 8 of 32 at 2 A/px) untouched, beyond it scrambled
        np.testing.assert_allclose(a[:, 1, 2], b[:, 1, 2], rtol=1e-4, atol=1e-3)
        c = np.corrcoef(a[:, 10, 3].real, b[:, 10, 3].real)[0, 1]
        self.assertLess(abs(c), 0.6)

    def test_control_star_keeps_metadata(self):
        from redprior.core.simulation import particles as simulate
        folder = tempfile.mkdtemp(prefix='redprior_bias_')
        vol = filters.lowpass(pseudo_protein(32), 2.0, 8.0)
        sim = simulate.simulate_particles(vol, 2.0, 12, snr=1.0, seed=1)
        star = write_particles(sim, 2.0, folder)
        images = bias.read_images(star)
        np.testing.assert_allclose(images, sim.images, atol=1e-5)
        out = bias.write_control(star, np.zeros_like(images), os.path.join(folder, 'c.star'), 2.0)
        from redprior.core.io.star_particles import read_particles
        a, b = read_particles(star), read_particles(out)
        np.testing.assert_allclose(a['rot'], b['rot'])
        self.assertEqual(b['image_name'][0], '000001@c.mrcs')
        self.assertEqual(float(np.abs(bias.read_images(out)).max()), 0.0)


class TestBiasProtocol(BaseTest):
    """A RED (lambda 1) refinement of tiny data, then its bias test on pure noise."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        _, cls.sim = simulateDemoParticles(cls, 32, 4.0, 150, 1.0, doCtf=False, seed=3)
        # launched only by the slow test
        cls.refine = cls.newProtocol(ProtRedPriorRefine, objLabel='RED',
                                     inputParticles=cls.sim.outputParticles,
                                     referenceVolume=cls.sim.outputInitialModel,
                                     priorMode=PRIOR_RED, redLambda=1.0, numberOfMpi=3)

    @pytest.mark.slow
    def test_noise_control_verdict(self):
        """Slow (about 11 min on 2 cores): the RED refinement, then two auto-refines of pure
        noise, which converge late; the verdict itself is tested on constructed maps in
        TestBiasMeasure."""
        self.launchProtocol(self.refine)
        prot = self.newProtocol(ProtRedPriorBiasTest, refinement=self.refine, controls=1,
                                groundTruth=self.sim.outputVolume, numberOfMpi=3)
        self.assertEqual(prot.validate(), [])
        self.launchProtocol(prot)
        r = prot.getResults()
        self.assertEqual(sorted((x['control'], x['prior']) for x in r['results']),
                         [('noise', 'Gaussian'), ('noise', 'red')])
        for x in r['results']:
            self.assertEqual(x['cutoff_A'], 30.0)  # the initial model's low-pass
            self.assertTrue(-0.2 < x['mean_fsc'] < 1.0)
            self.assertEqual(x['invented'], x['mean_fsc'] > bias.INVENTED_FSC)
        self.assertRegex(r['verdict'], '^(PASS|FAIL)')
        self.assertIn(r['verdict'], prot.summary()[0] if hasattr(prot, 'summary') else
                      prot._summary()[0])
        with open(prot._getExtraPath('bias.json')) as fh:
            self.assertEqual(json.load(fh)['verdict'], r['verdict'])

    def test_refuses_an_unfinished_refinement_and_randomising_beyond_nyquist(self):
        unfinished = self.newProtocol(ProtRedPriorRefine, inputParticles=self.sim.outputParticles,
                                      referenceVolume=self.sim.outputInitialModel)
        prot = self.newProtocol(ProtRedPriorBiasTest, refinement=unfinished, controls=2,
                                randomiseBeyond=6.0, numberOfMpi=3)
        errors = prot.validate()
        self.assertEqual(len(errors), 2, errors)
        self.assertIn('has not finished: run it first', errors[0])
        self.assertIn('coarser than Nyquist (8 Å)', errors[1])
