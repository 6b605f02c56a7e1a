"""Wizards of 'CW-RED 3D auto-refine' and the shipped workflow template, end to end.

The template test loads redprior/templates/*.json.template the way `scipion template` does
(plugin templates -> environment -> fields -> workflow JSON -> Project.loadProtocols) and
checks its graph and each protocol's validation in the default run. Running it (tiny data:
box 40 at 3 A/px, 200 particles, SNR 1, no CTF; two real relion_refine_mpi runs, about 3 min
on 2 cores) is `slow`: the demo test runs the same seven protocols end to end by default.
Run with `python -m pytest redprior/tests/test_wizards_template.py -q` (add `-m slow` for the run).
"""
import json
import math
import os

import numpy as np
import pytest

import pwem
from pwem.protocols import ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject
from pyworkflow.viewer import DESKTOP_TKINTER

import redprior
from redprior.core.io.shipped import DEMO_MODEL
from redprior import constants as C
from redprior.core.fourier import filters as fourier
from redprior.core.io import mrc as mrcio
from redprior.core.simulation import structure
from redprior.protocols import ProtRedPriorRefine, ProtRedPriorSimulate
from redprior.protocols.protocol_refine import PRIOR_CWRED, PRIOR_GAUSSIAN
from redprior.wizards import (RedPriorCwThresholdsWizard, RedPriorInitialLowpassWizard,
                              RedPriorMaskDiameterWizard)
from redprior.wizards import wizard_refine as W

TEMPLATE_ID = 'redprior-cwred_vs_gaussian_simulated'
REF_BOX, REF_PIXEL = 64, 2.0


class FakeForm:
    """What a wizard uses of pyworkflow's FormWindow."""

    def __init__(self, protocol):
        self.protocol, self.vars, self.infos, self.errors = protocol, {}, [], []

    def setVar(self, name, value):
        self.vars[name] = value

    def showInfo(self, msg, *args, **kwargs):
        self.infos.append(msg)

    def showError(self, msg, *args, **kwargs):
        self.errors.append(msg)


def _fakeDenoiser(folder, name, **meta):
    """A model file and its metadata sidecar (read_metadata only needs both to exist)."""
    path = os.path.join(folder, name + '.keras')
    open(path, 'wb').close()
    meta = dict(dict(box=64, pixel_size=2.0, normalisation='standardise'), **meta)
    with open(os.path.join(folder, name + '.json'), 'w') as fh:
        json.dump(meta, fh)
    return path


class TestRefineWizards(BaseTest):
    """The three wizards on a real reference map (the shipped model, 30 A low-pass)."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.data = os.path.abspath('wizardData')
        os.makedirs(cls.data, exist_ok=True)
        vol = fourier.lowpass(structure.potential_map(DEMO_MODEL, REF_BOX, REF_PIXEL),
                              REF_PIXEL, 30.0)
        mrcio.write_map(os.path.join(cls.data, 'reference.mrc'), vol, REF_PIXEL)
        cls.protVol = cls.newProtocol(ProtImportVolumes, objLabel='reference',
                                      filesPath=os.path.join(cls.data, 'reference.mrc'),
                                      samplingRate=REF_PIXEL)
        cls.launchProtocol(cls.protVol)
        cls.maxRadius = structure.structure_summary(
            structure.read_structure(DEMO_MODEL))['max_radius_A']

    def _refine(self, **kwargs):
        return self.newProtocol(ProtRedPriorRefine, referenceVolume=self.protVol.outputVolume,
                                priorMode=PRIOR_CWRED, **kwargs)

    def _show(self, wizard, prot, *params):
        form = FakeForm(prot)
        wizard().show(form, *params)
        return form

    def test_found_by_scipion(self):
        refine = pwem.Domain.findWizards(self._refine(), DESKTOP_TKINTER)
        self.assertIs(refine['cwLow'], RedPriorCwThresholdsWizard)
        self.assertIs(refine['cwHigh'], RedPriorCwThresholdsWizard)
        self.assertIs(refine['particleDiameter'], RedPriorMaskDiameterWizard)
        self.assertIs(refine['iniHigh'], RedPriorInitialLowpassWizard)
        sim = pwem.Domain.findWizards(self.newProtocol(ProtRedPriorSimulate), DESKTOP_TKINTER)
        self.assertIs(sim['initialLowpass'], RedPriorInitialLowpassWizard)
        self.assertIn('snr', sim)  # the noise wizard is still there

    def test_thresholds_from_denoiser(self):
        model = _fakeDenoiser(self.data, 'suggested', cw_low=12.3456, cw_high=6.1)
        form = self._show(RedPriorCwThresholdsWizard, self._refine(denoiserFile=model), 'cwLow')
        self.assertEqual(form.errors, [])
        self.assertEqual(form.vars, {'cwLow': 12.35, 'cwHigh': 6.1})
        self.assertIn('From the single-pass curve of suggested.keras', form.infos[0])
        self.assertNotIn('Nyquist', form.infos[0])
        # what the current training code writes (top-level cw_low / cw_high), with its reason
        model = _fakeDenoiser(self.data, 'trained', cw_low=11.0, cw_high=3.5,
                              threshold_reason='the gain reaches the coarsest bin measured (50.0 A)')
        form = self._show(RedPriorCwThresholdsWizard, self._refine(denoiserFile=model), 'cwHigh')
        self.assertEqual(form.vars, {'cwLow': 11.0, 'cwHigh': 3.5})
        self.assertIn('The thresholds stored with trained.keras', form.infos[0])
        self.assertIn('How they were set: the gain reaches the coarsest bin', form.infos[0])
        # 3.5 A is finer than Nyquist of the 2 A/px reference (4 A): lambda never reaches 1
        self.assertIn('Nyquist (4.00 A)', form.infos[0])

    def test_thresholds_of_the_shipped_denoiser(self):
        # no model chosen: the refinement will use the shipped one, so the wizard reads its
        # metadata: the ramp the quality benchmark measured (its single-pass curve on RELION
        # intermediates places 17.3 / 7.8 A, a lower bound), with the reason shown, and no
        # error dialog
        from redprior.core.denoiser.model import read_metadata
        from redprior.core.io.shipped import DEFAULT_DENOISER
        from redprior.core.prior.schedule import shipped_ramp
        meta = read_metadata(DEFAULT_DENOISER)
        form = self._show(RedPriorCwThresholdsWizard, self._refine(), 'cwLow')
        self.assertEqual((meta['cw_low'], meta['cw_high']), (20.0, 10.0))
        self.assertEqual(form.vars, {'cwLow': 20.0, 'cwHigh': 10.0})
        self.assertEqual(shipped_ramp(), (20.0, 10.0))  # the form's default is the same
        self.assertEqual(form.errors, [])
        for text in ('The thresholds stored with redprior_default_denoiser.keras',
                     'How they were set: measured by the quality benchmark', 'pure noise',
                     'places 17.3 / 7.8 A: the gain reaches the coarsest bin measured'):
            self.assertIn(text, form.infos[0])

    def test_thresholds_fall_back_to_the_paper(self):
        paper = {'cwLow': 10.0, 'cwHigh': 4.5}
        cases = [
            (_fakeDenoiser(self.data, 'nocurve'), ['no single-pass curve', 'nocurve.json']),
            (_fakeDenoiser(self.data, 'inverted', cw_low=4, cw_high=9),
             ['Invalid suggested thresholds']),
            (os.path.join(self.data, 'missing.keras'), ['does not exist']),
        ]
        for model, texts in cases:
            form = self._show(RedPriorCwThresholdsWizard, self._refine(denoiserFile=model))
            self.assertEqual(form.vars, paper, model)
            self.assertEqual(len(form.errors), 1, model)
            for text in texts + ["paper's thresholds"]:
                self.assertIn(text, form.errors[0], (model, form.errors[0]))
        # a usable model whose curve suggests no ramp: the paper's values, said as information
        model = _fakeDenoiser(self.data, 'nogain', cw_low=None, cw_high=None,
                              threshold_reason='no gain at the finest resolution measured')
        form = self._show(RedPriorCwThresholdsWizard, self._refine(denoiserFile=model))
        self.assertEqual((form.vars, form.errors), (paper, []))
        for text in ('suggests no thresholds', 'no gain at the finest', "paper's thresholds"):
            self.assertIn(text, form.infos[0])

    def test_mask_diameter(self):
        form = self._show(RedPriorMaskDiameterWizard, self._refine(), 'particleDiameter')
        self.assertEqual(form.errors, [])
        d = form.vars['particleDiameter']
        # the atoms reach 47 A from the centre: the mask holds them, plus a modest margin,
        # and stays within 90 % of the 128 A box
        self.assertGreater(d, 2 * self.maxRadius)
        self.assertLess(d, 2 * self.maxRadius * 1.25)
        self.assertLessEqual(d, 0.9 * REF_BOX * REF_PIXEL)
        self.assertNotIn('Capped', form.infos[0])
        # no reference: say what is missing
        form = self._show(RedPriorMaskDiameterWizard, self.newProtocol(ProtRedPriorRefine))
        self.assertEqual(form.vars, {})
        self.assertIn('initial 3D reference', form.errors[0])

    def test_mask_diameter_rule(self):
        # a ball of radius 10 px at 2 A/px in box 64: extent 20 A plus the 15 A low-pass tail
        c = np.arange(REF_BOX) - REF_BOX // 2
        r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
        ball = (r <= 10).astype(np.float32)
        d, info = W.maskDiameter(ball, REF_PIXEL)
        self.assertTrue(20.0 <= info['radius'] <= 28.0, info)
        # + 10 %, but at least 2 px on each side (here the 2 px win: 8 A > 4.9 A)
        self.assertEqual(d, math.ceil(2 * info['radius'] + 2 * W.MASK_MARGIN_MIN_PX * REF_PIXEL))
        self.assertFalse(info['capped'])
        # a ball filling the box is capped at 90 % of it
        d, info = W.maskDiameter((r <= 30).astype(np.float32), REF_PIXEL)
        self.assertTrue(info['capped'])
        self.assertEqual(d, math.ceil(0.9 * REF_BOX * REF_PIXEL))
        with self.assertRaises(W.WizardError):
            W.maskDiameter(np.zeros((8, 8, 8), np.float32), REF_PIXEL)

    def test_initial_lowpass(self):
        self.assertEqual(W.initialLowpass(1.0), 30.0)
        self.assertEqual(W.initialLowpass(5.0), 40.0)   # 4 x Nyquist = 8 px
        form = self._show(RedPriorInitialLowpassWizard, self._refine(iniHigh=12.0), 'iniHigh')
        self.assertEqual(form.vars, {'iniHigh': 30.0})
        sim = self.newProtocol(ProtRedPriorSimulate, pixelSize=5.0)
        form = self._show(RedPriorInitialLowpassWizard, sim, 'initialLowpass')
        self.assertEqual(form.vars, {'initialLowpass': 40.0})
        simVol = self.newProtocol(ProtRedPriorSimulate, inputSource=C.SOURCE_VOLUME,
                                  inputVolume=self.protVol.outputVolume)
        form = self._show(RedPriorInitialLowpassWizard, simVol, 'initialLowpass')
        self.assertEqual(form.vars, {'initialLowpass': 30.0})
        form = self._show(RedPriorInitialLowpassWizard, self.newProtocol(ProtRedPriorRefine))
        self.assertEqual(form.vars, {})
        self.assertIn('pixel size is unknown', form.errors[0])


def loadTemplate(project, **fields):
    """Find the plugin's template as `scipion template` does, fill its fields and load it
    into the project; return {template protocol id: protocol}."""
    from pyworkflow.template import TemplateList
    templates = TemplateList()
    templates.addPluginTemplates(TEMPLATE_ID)
    assert len(templates.templates) == 1, [t.getObjId() for t in templates.templates]
    template = templates.templates[0]
    template.replaceEnvVariables()
    template.parseContent()
    for alias, value in fields.items():
        assert template.setParamValue(alias, str(value)), alias
    path = template.createTemplateFile()
    try:
        return project.loadProtocols(path)
    finally:
        os.remove(path)


class TestWorkflowTemplate(BaseTest):
    """The shipped template: discovery, fields, protocol graph and one tiny real run."""
    FIELDS = dict(box=40, pixel=3.0, particles=200, snr=1.0, mpi=3)

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.prots = loadTemplate(cls.proj, **cls.FIELDS)

    def test_template_found_with_model_path(self):
        from pyworkflow.template import TemplateList
        # the instance pyworkflow's TemplateList asks (Domain registers one per plugin)
        plugin = pwem.Domain.getPluginModule('redprior')._pluginInstance
        self.assertIsInstance(plugin, redprior.Plugin)
        folder = plugin.getPluginTemplateDir()
        self.assertTrue(os.path.exists(os.path.join(
            folder, 'cwred_vs_gaussian_simulated.json.template')))
        self.assertEqual(os.path.dirname(folder), os.path.dirname(redprior.__file__))
        templates = TemplateList()
        templates.addPluginTemplates(TEMPLATE_ID)
        template = templates.templates[0]
        self.assertIn('Kimanius', template.description)
        template.replaceEnvVariables()
        template.parseContent()
        params = {p.getAlias(): p for p in template.getParams().values()}
        self.assertEqual(set(params), {'model', 'box', 'pixel', 'particles', 'snr', 'mpi',
                                       'denoiser'})
        # the placeholder is replaced by this installation's data folder, and validates
        self.assertEqual(params['model'].getValue(), DEMO_MODEL)
        self.assertIsNone(params['model'].validate())
        self.assertEqual(params['box'].getValue(), '48')
        self.assertEqual(params['denoiser'].getValue(), '')

    def test_graph(self):
        prots = self.prots
        classes = {k: p.getClassName() for k, p in prots.items()}
        self.assertEqual(classes, {'1': 'ProtImportPdb', '2': 'ProtRedPriorSimulate',
                                   '3': 'ProtRedPriorRefine', '4': 'ProtRedPriorRefine',
                                   '5': 'ProtRedPriorValidate', '6': 'ProtRedPriorValidate',
                                   '7': 'ProtRedPriorConsensus'})
        imp, sim, gauss, cw, val1, val2, cons = [prots[str(i)] for i in range(1, 8)]

        def link(pointer, prot, attr):
            self.assertIs(pointer.getObjValue(), prot)
            self.assertEqual(pointer.getExtended(), attr)

        self.assertEqual(imp.pdbFile.get(), DEMO_MODEL)
        link(sim.inputAtomStruct, imp, 'outputPdb')
        self.assertEqual((sim.boxSize.get(), sim.pixelSize.get(), sim.numberOfParticles.get(),
                          sim.snr.get(), sim.doCtf.get()), (40, 3.0, 200, 1.0, False))
        for refine, mode in ((gauss, PRIOR_GAUSSIAN), (cw, PRIOR_CWRED)):
            self.assertEqual(refine.priorMode.get(), mode)
            self.assertEqual(refine.numberOfMpi.get(), 3)
            link(refine.inputParticles, sim, 'outputParticles')
            link(refine.referenceVolume, sim, 'outputInitialModel')
        # the template's ramp is the shipped denoiser's (the form's default)
        from redprior.core.prior.schedule import shipped_ramp
        self.assertEqual((cw.cwLow.get(), cw.cwHigh.get(), cw.denoiserFile.get()),
                         shipped_ramp() + ('',))
        for val, refine in ((val1, gauss), (val2, cw)):
            link(val.inputVolume, refine, 'outputVolume')
            link(val.refinedParticles, refine, 'outputParticles')
            link(val.groundTruth, sim, 'outputVolume')
            link(val.trueParticles, sim, 'outputParticles')
        self.assertEqual([(p.getObjValue(), p.getExtended()) for p in cons.inputVolumes],
                         [(gauss, 'outputVolume'), (cw, 'outputVolume')])
        self.assertEqual([(p.getObjValue(), p.getExtended()) for p in cons.inputParticles],
                         [(gauss, 'outputParticles'), (cw, 'outputParticles')])
        # every protocol passes its own validation as loaded (inputs not produced yet aside)
        self.assertEqual(imp.validate(), [])

    @pytest.mark.slow
    def test_run(self):
        prots = [self.prots[str(i)] for i in range(1, 8)]
        for prot in prots:  # in order: each one's inputs are the previous ones' outputs
            self.launchProtocol(prot)
        imp, sim, gauss, cw, val1, val2, cons = prots
        self.assertTrue(all(p.isFinished() for p in prots))
        self.assertSetSize(sim.outputParticles, 200)
        for refine in (gauss, cw):
            self.assertEqual(refine.outputVolume.getDim(), (40, 40, 40))
            self.assertSetSize(refine.outputParticles, 200)
            self.assertTrue(math.isfinite(refine.getResults()['final_resolution']))
        self.assertEqual(gauss.getResults()['method'], 'gaussian')
        self.assertEqual(cw.getResults()['method'], 'cwred')
        for val in (val1, val2):
            res = val.getResults()
            gold = res['curves']['half_corrected']['resolution']['0.143']
            truth = res['curves']['gt_masked']['resolution']['0.5']
            # both are real resolutions between Nyquist (6 A) and the box (120 A)
            for r in (gold, truth):
                self.assertTrue(6.0 <= r['limit_A'] < 120.0, r)
            self.assertLess(truth['limit_A'], 20.0, truth)
            self.assertIn('angular', res['poses'])
            self.assertGreater(val.outputFSCs.getSize(), 0)
        summary = cons.getResults()['summary']
        self.assertEqual(summary['n_common'], 200)
        self.assertEqual(summary['n_agree'] + summary['n_disagree'], 200)
        self.assertSetSize(cons.outputAgreeing, summary['n_agree'])
        self.assertGreater(summary['n_agree'], 150)  # SNR 1: the engines mostly agree
        if summary['n_disagree']:
            self.assertSetSize(cons.outputDisagreeing, summary['n_disagree'])
