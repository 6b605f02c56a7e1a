"""'CW-RED 3D auto-refine': RELION 3D auto-refine with our external-reconstruct program.

RELION (relion_refine_mpi --auto_refine --split_random_halves --external_reconstruct) runs
the E-step and calls `redprior_exrecon` for every M-step; that program applies the Gaussian
(RELION's own), RED or CW-RED update. Only flags that RELION 3.1 knows are passed (RELION 4
and 5 accept the same ones and also write the pixel size into the external STAR, which the
hook checks against --angpix; see README "How the prior gets into RELION").
"""
import os
import time

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pyworkflow.protocol.constants import STEPS_SERIAL
from pwem.constants import ALIGN_PROJ
from pwem.objects import SetOfFSCs, SetOfParticles, Volume
from pwem.protocols import ProtRefine3D

from redprior.objects import RedPriorFSC
from redprior.protocols.protocol_base import RelionRunnerMixin
from redprior.protocols.refine_form import (  # noqa: F401 (PRIOR_*: the form's indices)
    DENOISER_INPUT_LABELS, DENOISER_INPUTS, HELP, PRIOR_CWRED, PRIOR_CWRED_SHELL, PRIOR_GAUSSIAN,
    PRIOR_LABELS, PRIOR_MODES, PRIOR_RED, define_prior_section)

EXRECON_LOG = 'exrecon_log.jsonl'


class ProtRedPriorRefine(RelionRunnerMixin, ProtRefine3D):
    """RELION 3D auto-refine with a learned prior (RED / CW-RED, Kimanius et al. 2021).

    The Gaussian choice reproduces plain RELION (lambda = 0) through the same hook.
    """
    _label = 'CW-RED 3D auto-refine'
    _devStatus = BETA
    _possibleOutputs = {'outputVolume': Volume, 'outputParticles': SetOfParticles,
                        'outputFSCs': SetOfFSCs}

    def __init__(self, **kwargs):
        ProtRefine3D.__init__(self, **kwargs)
        self.stepsExecutionMode = STEPS_SERIAL

    # ------------------------------------------------------------------ form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputParticles', params.PointerParam, pointerClass='SetOfParticles',
                      important=True, label='Input particles')
        form.addParam('referenceVolume', params.PointerParam, pointerClass='Volume',
                      important=True, label='Initial 3D reference', help=HELP['referenceVolume'])
        form.addParam('iniHigh', params.FloatParam, default=30.0, label='Initial low-pass (Å)',
                      help=HELP['iniHigh'])
        form.addParam('symmetry', params.StringParam, default='C1', label='Symmetry',
                      help=HELP['symmetry'])
        form.addParam('particleDiameter', params.FloatParam, default=-1,
                      label='Mask diameter (Å)', help=HELP['particleDiameter'])

        define_prior_section(form)

        form.addSection(label='Sampling')
        for name, label, default in (('healpixOrder', 'Initial HEALPix order', 1),
                                     ('autoLocalHealpixOrder', 'Local searches from HEALPix '
                                                               'order', 3),
                                     ('offsetRange', 'Offset range (px)', 2),
                                     ('offsetStep', 'Offset step (px)', 1)):
            form.addParam(name, params.IntParam, default=default, label=label, help=HELP[name])
        form.addParam('padding', params.EnumParam, choices=['1', '2'], default=1,
                      display=params.EnumParam.DISPLAY_HLIST, label='Padding factor',
                      help=HELP['padding'])
        form.addParam('lowResolJoinHalves', params.FloatParam, default=40.0,
                      label='Join halves below (Å)', help=HELP['lowResolJoinHalves'])
        form.addParam('randomSeed', params.IntParam, default=42, label='Random seed',
                      help=HELP['randomSeed'])
        form.addParam('keepExternalFiles', params.BooleanParam, default=False,
                      expertLevel=params.LEVEL_ADVANCED, label='Keep RELION\'s B/K files?',
                      help=HELP['keepExternalFiles'])
        form.addParam('extraParams', params.StringParam, default='',
                      expertLevel=params.LEVEL_ADVANCED,
                      label='Additional relion_refine arguments', help=HELP['extraParams'])
        form.addParallelSection(threads=1, mpi=3)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep,
                                 self.inputParticles.get().getObjId(),
                                 self.referenceVolume.get().getObjId())
        self._insertFunctionStep(self.refineStep, self._priorArgs())
        self._insertFunctionStep(self.createOutputStep)

    def convertInputStep(self, particlesId, referenceId):
        from relion.convert import writeSetOfParticles
        from redprior.core.io.mrc import read_map, write_map

        parts = self.inputParticles.get()
        writeSetOfParticles(parts, self._getExtraPath('input_particles.star'),
                            outputDir=self._getExtraPath(), alignType=ALIGN_PROJ)
        ref = self.referenceVolume.get()
        data, _ = read_map(ref.getFileName())
        write_map(self._getExtraPath('reference.mrc'), data, parts.getSamplingRate())
        if self.priorMode.get() != PRIOR_GAUSSIAN:
            self.info('Denoiser: %s' % self.getDenoiserPath())

    def refineStep(self, priorArgs):
        model = self.getDenoiserPath() if self.priorMode.get() != PRIOR_GAUSSIAN else None
        gpu = self.getAttributeValue('gpusToUse', '0') if self.getAttributeValue('doGpu') else None
        worker, socket = self._startDenoiserWorker(model, gpu)
        try:
            self._runRelion(socket)
        finally:
            self._stopDenoiserWorker(worker, socket)

    def _runRelion(self, socket):
        from redprior.core.relion.command import continue_args, refine_args
        from redprior.core.relion.run_folder import last_optimiser
        t0 = time.time()
        found = last_optimiser(self._getExtraPath())
        if found:
            # Continue an interrupted run; the hook is given again, so the prior is kept.
            last, it = found
            self.info('Continuing from %s (iteration %d)' % (last, it))
            args = continue_args(last, self._getExtraPath('run_ct%d' % it),
                                 self.numberOfThreads.get())
        else:
            args = refine_args(self._refineSettings())
        self._runRelionRefine(args, self._hookArgs(socket), self.numberOfMpi.get())
        self._writeSummary(time.time() - t0)

    def createOutputStep(self):
        from relion.convert import readSetOfParticles

        parts = self.inputParticles.get()
        pix = parts.getSamplingRate()
        final = self._finalFile('class001.mrc')
        vol = Volume()
        vol.setFileName(final)
        vol.setSamplingRate(pix)
        half1 = self._finalFile('half1_class001_unfil.mrc')
        vol.setHalfMaps([half1, half1.replace('half1', 'half2')])

        outParts = self._createSetOfParticles()
        outParts.copyInfo(parts)
        readSetOfParticles(self._finalFile('data.star'), outParts, alignType=ALIGN_PROJ)
        outParts.setSamplingRate(pix)

        fscs = self._createSetOfFSCs()
        fsc = RedPriorFSC(objLabel='gold-standard FSC (%s)' % PRIOR_LABELS[self.priorMode.get()])
        from redprior.core.prior.history import final_fsc
        freq, curve = final_fsc(self._getExtraPath())
        fsc.setData(freq, curve)
        fscs.append(fsc)
        self._defineOutputs(outputVolume=vol, outputParticles=outParts, outputFSCs=fscs)
        self._defineSourceRelation(self.inputParticles, vol)
        self._defineSourceRelation(self.inputParticles, outParts)
        self._defineSourceRelation(self.referenceVolume, vol)
        if self.priorMode.get() != PRIOR_GAUSSIAN and self.denoiserModel.get() is not None:
            self._defineSourceRelation(self.denoiserModel, vol)

    # ------------------------------------------------------------------ helpers
    def _priorArgs(self):
        return [PRIOR_MODES[self.priorMode.get()], self.redLambda.get(), self.cwLow.get(),
                self.cwHigh.get(), self.getDenoiserPath()]

    def getUserDenoiserPath(self):
        """The denoiser chosen on the form: the DenoiserModel object first, then the file."""
        model = self.denoiserModel.get() if self.hasAttribute('denoiserModel') else None
        if model is not None and model.getFileName():
            return model.getFileName()
        return self.denoiserFile.get() or ''

    def getDenoiserPath(self):
        if self.priorMode.get() == PRIOR_GAUSSIAN:
            return ''
        if self.getUserDenoiserPath():
            return self.getUserDenoiserPath()
        from redprior.core.io.shipped import DEFAULT_DENOISER
        return DEFAULT_DENOISER

    def getExreconLog(self):
        return self._getExtraPath(EXRECON_LOG)

    def _hookArgs(self, socket=None):
        from redprior.core.prior.options import hook_args
        return hook_args(PRIOR_MODES[self.priorMode.get()],
                         self.inputParticles.get().getSamplingRate(),
                         os.path.abspath(self.getExreconLog()),
                         model=os.path.abspath(self.getDenoiserPath()) if self.getDenoiserPath() else None,
                         red_lambda=self.redLambda.get(), cw_low=self.cwLow.get(),
                         cw_high=self.cwHigh.get(), worker=socket,
                         keep=self.keepExternalFiles.get(),
                         **self._hookOptions())

    def _hookOptions(self):
        """The hook's options beyond the schedule (also used by the prior-bias test, so that
        it tests the prior as this refinement applied it)."""
        from redprior.core.denoiser.views import HALF_VIEWS_ROTATED, HALF_VIEWS_SAME
        return dict(cap_at_resolution=self.capAtResolution.get(),
                    lowpass_reference=self.lowpassReference.get(),
                    denoiser_input=DENOISER_INPUTS[self.denoiserInput.get()],
                    half_views=HALF_VIEWS_ROTATED if self.halfViews.get() else HALF_VIEWS_SAME)

    def _maskDiameter(self):
        d = self.particleDiameter.get()
        parts = self.inputParticles.get()
        return d if d and d > 0 else 0.9 * parts.getXDim() * parts.getSamplingRate()

    def _refineSettings(self):
        from redprior.core.relion.command import RefineSettings
        return RefineSettings(
            output_root=self._getExtraPath('run'),
            particles_star=self._getExtraPath('input_particles.star'),
            reference=self._getExtraPath('reference.mrc'),
            mask_diameter_A=self._maskDiameter(), ini_high_A=self.iniHigh.get(),
            healpix_order=self.healpixOrder.get(),
            auto_local_healpix_order=self.autoLocalHealpixOrder.get(),
            offset_range=self.offsetRange.get(), offset_step=self.offsetStep.get(),
            symmetry=self.symmetry.get(),
            low_resol_join_halves_A=self.lowResolJoinHalves.get(),
            threads=self.numberOfThreads.get(), random_seed=self.randomSeed.get(),
            pad=self.padding.get() + 1, ctf=self.inputParticles.get().hasCTF(),
            extra=self.extraParams.get() or '')

    def _finalFileOrNone(self, suffix):
        from redprior.core.relion.run_folder import final_output
        return final_output(self._getExtraPath(), suffix)

    def _finalFile(self, suffix):
        path = self._finalFileOrNone(suffix)
        if path is None:
            raise FileNotFoundError('RELION did not write its final %s in %s; see the log.'
                                    % (suffix, self._getExtraPath()))
        return path

    def _writeSummary(self, seconds):
        from redprior.core.io.jsonfile import write_json
        from redprior.core.prior.history import read_log, refinement_summary
        summary = refinement_summary(self._getExtraPath(), self.getExreconLog(),
                                     PRIOR_MODES[self.priorMode.get()], seconds,
                                     self.getDenoiserPath())
        write_json(self._getExtraPath('summary.json'), summary)
        for r in read_log(self.getExreconLog()):
            if 'error' not in r:
                self.info('iteration %s half %s: schedule resolution %s, lambda %.3f, %.1f s'
                          % (r['iteration'], r['half'] or 'joined',
                             r.get('resolution_text') or r['resolution'], r['lambda'],
                             r['seconds']))
        self.info('Final resolution %.2f A (%s) after %d iterations (%.0f s)'
                  % (summary['final_resolution'], summary['final_resolution_what'],
                     summary['iterations'], seconds))
        if summary['resolution_caution']:
            self.info(summary['resolution_caution'])

    def getResults(self):
        """Contents of extra/summary.json ({} before RELION finished)."""
        from redprior.core.io.jsonfile import read_json
        return read_json(self._getExtraPath('summary.json'))

    # ------------------------------------------------------------------ info
    def _validate(self):
        from redprior.core.io.mrc import MapError, read_map
        from redprior.core.prior.settings import prior_problems
        errors = []  # Protocol.validate() already adds Plugin.validateInstallation()
        parts, ref = self.inputParticles.get(), self.referenceVolume.get()
        if parts is None or ref is None:
            return errors + ['Particles and a reference volume are required.']
        if self.numberOfMpi.get() < 3:
            errors.append('relion_refine_mpi --split_random_halves needs at least 3 MPI '
                          'processes (1 leader + 2 halves); set MPI to 3 or more.')
        pbox, rbox = parts.getXDim(), ref.getXDim()
        if pbox != rbox:
            errors.append('Particle box (%d px) differs from the reference box (%d px): resize '
                          'the reference (e.g. xmipp/relion resize) to %d px.' % (pbox, rbox, pbox))
        ppix, rpix = parts.getSamplingRate(), ref.getSamplingRate()
        if ppix and rpix and abs(ppix - rpix) > 0.01 * ppix:
            errors.append('Pixel size mismatch: particles %.3f A/px, reference %.3f A/px. '
                          'Rescale the reference to the particles\' pixel size.' % (ppix, rpix))
        try:
            read_map(ref.getFileName())
        except MapError as exc:
            errors.append('Reference volume: %s' % exc)
        errors += prior_problems(self._priorSettings())
        errors += self._validateGeometry(parts)
        return errors

    def _validateGeometry(self, parts):
        from redprior.core.geometry.rotations import symmetry_order
        errors = []
        try:
            symmetry_order(self.symmetry.get())
        except ValueError as exc:
            errors.append('Symmetry: %s' % exc)
        box_A = parts.getXDim() * (parts.getSamplingRate() or 0)
        d = self.particleDiameter.get()
        if d and d > 0 and box_A and d > box_A:
            errors.append('The mask diameter (%g A) is larger than the box (%d px x %g A/px = '
                          '%g A): use at most %g A, or -1 for 90%% of the box.'
                          % (d, parts.getXDim(), parts.getSamplingRate(), box_A, box_A))
        if parts.getSize() == 0:
            errors.append('The particle set is empty.')
        if '--blush' in (self.extraParams.get() or '').split():
            errors.append('RELION 5\'s --blush replaces the external reconstruction, so this '
                          'protocol\'s prior would never be applied: remove --blush from the '
                          'additional arguments (or use RELION\'s own refine protocol for Blush).')
        return errors

    def _priorSettings(self):
        from redprior.core.prior.settings import PriorSettings
        parts = self.inputParticles.get()
        model = self.getDenoiserPath() if self.priorMode.get() != PRIOR_GAUSSIAN else None
        return PriorSettings(mode=PRIOR_MODES[self.priorMode.get()],
                             pixel_size=parts.getSamplingRate() if parts else None,
                             red_lambda=self.redLambda.get(), cw_low=self.cwLow.get(),
                             cw_high=self.cwHigh.get(), model=model)

    def _summary(self):
        s = self.getResults()
        if not s:
            return ['Prior: %s (not finished yet)' % PRIOR_LABELS[self.priorMode.get()]]
        from redprior.core.prior.history import schedule_history
        hist = schedule_history(s['lambda_history'])
        prior = PRIOR_LABELS[self.priorMode.get()]
        if self.priorMode.get() != PRIOR_GAUSSIAN:
            prior += ' (%s%s; %s; denoiser input: %s)' % (
                'only up to the current resolution' if self.capAtResolution.get()
                else 'on every shell',
                "; each half's reference low-passed at the resolution"
                if self.lowpassReference.get() else '',
                'the halves denoised in different frames' if self.halfViews.get()
                else 'both halves denoised in one frame',
                DENOISER_INPUT_LABELS[self.denoiserInput.get()])
        return ['Prior: %s' % prior,
                'Final resolution: %.2f Å (%s) after %d iterations (%.0f s)'
                % (s['final_resolution'], s['final_resolution_what'], s['iterations'],
                   s['wall_seconds']),
                'λ per iteration (from the schedule resolution: the FSC 0.143 RELION hands '
                'to the hook): %s' % (', '.join('%.2f at %.1f Å' % (lam, res)
                                                for _, res, lam in hist) or '-')] + \
            ([s['resolution_caution']] if s.get('resolution_caution') else [])

    def _methods(self):
        return ['Particles were refined with RELION 3D auto-refine using the %s prior through '
                'the external-reconstruct hook (Kimanius et al. 2021).'
                % PRIOR_LABELS[self.priorMode.get()]]

    def _citations(self):
        return ['Kimanius2021']
