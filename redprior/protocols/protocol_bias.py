"""'prior bias test': does the refinement's prior invent structure that the data do not hold?

The particles of a finished 'CW-RED 3D auto-refine' are turned into controls without signal
(pure noise, and phases randomised beyond a resolution; core.validation.bias), and each
control is refined from the same initial model with that refinement's settings, once with
its prior and once with RELION's Gaussian prior. Structure that appears beyond the control's
cutoff (FSC to the real structure) was put there by the prior or the reference, not the data.
"""
import dataclasses
import os

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pyworkflow.protocol.constants import STEPS_SERIAL
from pwem.protocols import EMProtocol

from redprior.protocols.protocol_base import RelionRunnerMixin

CONTROL_CHOICES = ['pure noise and phase-randomised', 'pure noise', 'phase-randomised']
CONTROLS_OF = {0: ('noise', 'phases'), 1: ('noise',), 2: ('phases',)}
RESULT_JSON = 'bias.json'


class ProtRedPriorBiasTest(RelionRunnerMixin, EMProtocol):
    """Refine particles that hold no signal with the prior under test and with the Gaussian
    prior, and report whether structure appeared that is not in the data."""
    _label = 'prior bias test'
    _devStatus = BETA
    _possibleOutputs = {}

    def __init__(self, **kwargs):
        EMProtocol.__init__(self, **kwargs)
        self.stepsExecutionMode = STEPS_SERIAL

    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('refinement', params.PointerParam, pointerClass='ProtRedPriorRefine',
                      important=True, label='Refinement to test',
                      help='A finished "CW-RED 3D auto-refine": its particles, initial model, '
                           'prior and RELION settings are used for the controls.')
        form.addParam('controls', params.EnumParam, choices=CONTROL_CHOICES, default=0,
                      label='Controls',
                      help='Pure noise: every particle replaced by Gaussian noise of its own '
                           'mean and standard deviation; structure beyond the initial '
                           'model\'s low-pass is invented. Phase-randomised: the particles '
                           'keep their amplitudes but have random phases beyond "randomise '
                           'beyond"; structure beyond it is invented.')
        form.addParam('randomiseBeyond', params.FloatParam, default=-1,
                      label='Randomise phases beyond (Å)',
                      help='-1: twice the Nyquist resolution (half of the Fourier range '
                           'keeps its signal). Choose it where the prior is active (e.g. '
                           'CW-RED\'s "λ 1 below") to test the prior where it acts.')
        form.addParam('groundTruth', params.PointerParam, pointerClass='Volume',
                      allowsNull=True, label='Ground truth (optional)',
                      help='The reference of the real structure; without it the tested '
                           'refinement\'s own map is used.')
        form.addParam('seed', params.IntParam, default=1, label='Random seed')
        form.addParallelSection(threads=1, mpi=3)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.makeControlsStep)
        for control in self._controls():
            for prior in self._priors():
                self._insertFunctionStep(self.refineStep, control, prior)
        self._insertFunctionStep(self.evaluateStep)

    def makeControlsStep(self):
        import numpy as np
        from redprior.core.validation import bias
        ref = self.refinement.get()
        star = ref._getExtraPath('input_particles.star')
        images = bias.read_images(star)
        rng = np.random.default_rng(self.seed.get())
        pixel = self._pixel()
        for control in self._controls():
            data = (bias.noise_like(images, rng) if control == 'noise' else
                    bias.phase_randomised(images, pixel, self._randomiseBeyond(), rng))
            os.makedirs(self._getExtraPath(control), exist_ok=True)
            bias.write_control(star, data, self._controlStar(control), pixel,
                               relative_to=os.getcwd())  # RELION runs in the project
            self.info('Control "%s": %d particles written to %s'
                      % (control, len(data), self._controlStar(control)))

    def refineStep(self, control, prior):
        from redprior.core.prior.options import hook_args
        from redprior.core.relion.command import refine_args
        ref = self.refinement.get()
        out = self._getExtraPath('%s_%s' % (control, prior))
        os.makedirs(out, exist_ok=True)
        settings = dataclasses.replace(ref._refineSettings(), output_root=os.path.join(out, 'run'),
                                       particles_star=self._controlStar(control))
        s = ref._priorSettings()
        mode = s.mode if prior == 'prior' else 'gaussian'
        worker, socket = self._startDenoiserWorker(s.model if mode != 'gaussian' else None)
        try:
            self.info('Refining the %s control with the %s prior' % (control, mode))
            self._runRelionRefine(refine_args(settings), hook_args(
                mode, s.pixel_size, os.path.abspath(os.path.join(out, 'exrecon_log.jsonl')),
                model=os.path.abspath(s.model) if mode != 'gaussian' else None,
                red_lambda=s.red_lambda, cw_low=s.cw_low, cw_high=s.cw_high, worker=socket,
                **ref._hookOptions()),
                self.numberOfMpi.get())
        finally:
            self._stopDenoiserWorker(worker, socket)

    def evaluateStep(self):
        from redprior.core.geometry.masks import solvent_mask
        from redprior.core.io.jsonfile import write_json
        from redprior.core.io.mrc import read_map
        from redprior.core.relion.run_folder import final_output
        from redprior.core.validation import bias
        pixel = self._pixel()
        reference, _ = read_map(self._referencePath())
        mask = solvent_mask(reference, pixel)
        results = {}
        for control in self._controls():
            cutoff = (self.refinement.get().iniHigh.get() if control == 'noise'
                      else self._randomiseBeyond())
            for prior in self._priors():
                vol, _ = read_map(final_output(self._getExtraPath('%s_%s' % (control, prior)),
                                               'class001.mrc'))
                results[(control, self._priorLabel(prior))] = bias.invented_structure(
                    vol, reference, pixel, cutoff, mask)
        overall, lines = bias.verdict(results)
        for line in lines + [overall]:
            self.info(line)
        write_json(self._getExtraPath(RESULT_JSON), {
            'verdict': overall, 'lines': lines, 'reference': self._referencePath(),
            'threshold': bias.INVENTED_FSC,
            'results': [dict(control=c, prior=p, **r) for (c, p), r in results.items()]})

    # ------------------------------------------------------------------ helpers
    def _controls(self):
        return CONTROLS_OF[self.controls.get()]

    def _priors(self):
        return ('prior', 'gaussian')

    def _priorLabel(self, prior):
        return self.refinement.get()._priorSettings().mode if prior == 'prior' else 'Gaussian'

    def _pixel(self):
        return self.refinement.get().inputParticles.get().getSamplingRate()

    def _randomiseBeyond(self):
        r = self.randomiseBeyond.get()
        return r if r and r > 0 else 4.0 * self._pixel()

    def _controlStar(self, control):
        return self._getExtraPath(control, 'particles.star')

    def _referencePath(self):
        from redprior.convert import volumePath
        gt = self.groundTruth.get()
        return volumePath(gt) if gt is not None else self.refinement.get()._finalFile(
            'class001.mrc')

    def getResults(self):
        from redprior.core.io.jsonfile import read_json
        return read_json(self._getExtraPath(RESULT_JSON))

    # ------------------------------------------------------------------ info
    def _validate(self):
        ref = self.refinement.get()
        if ref is None:
            return ['Choose a finished "CW-RED 3D auto-refine" to test.']
        errors = []
        if not ref.isFinished():
            errors.append('The refinement to test has not finished: run it first.')
        if self.numberOfMpi.get() < 3:
            errors.append('relion_refine_mpi --split_random_halves needs at least 3 MPI '
                          'processes; set MPI to 3 or more.')
        nyquist = 2 * (self._pixel() or 0)
        if self.controls.get() != 1 and self._randomiseBeyond() <= nyquist:
            errors.append('"Randomise phases beyond" (%g Å) must be coarser than Nyquist '
                          '(%g Å): nothing would be randomised.' % (self._randomiseBeyond(),
                                                                   nyquist))
        return errors

    def _summary(self):
        r = self.getResults()
        if not r:
            return ['Prior bias test (not finished yet)']
        return [r['verdict']] + r['lines']

    def _methods(self):
        return ['Prior bias: the particles were replaced by controls without signal (pure '
                'noise; phases randomised beyond a resolution) and refined with the prior '
                'under test and with the Gaussian prior; structure beyond each control\'s '
                'cutoff was measured by the FSC to the reference map.']

    def _citations(self):
        return ['Kimanius2021']
