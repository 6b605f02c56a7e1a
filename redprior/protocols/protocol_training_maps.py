"""'training maps': pairs (noisy map x~, FSC-filtered ground truth) to train the RED denoiser.

Kimanius et al. 2021, sec. 3.1 (docs/PAPER.md 1.3). Three modes, all with the paper's target
(the ground truth multiplied per shell by the FSC of x~; core.training_data.pairs):
  * RELION intermediates (the paper's main set): simulated particles are refined by RELION
    with our external-reconstruct program in gaussian --record mode, which saves every
    unregularised map x~ = B/K with its FSC (core.training_data.recorded);
  * perturbed-pose reconstructions: half-maps of simulated particles reconstructed at poses
    off by random angular and shift errors (a cheap stand-in for misalignment;
    core.training_data.perturbed);
  * Gaussian noise (the paper's second set): shaped noise damped in the solvent
    (core.training_data.gaussian).
Ground truths come from maps (e.g. 'simulate particles' outputs), atomic models, or the
shipped training set (redprior/data/training_manifest.json); training_maps_inputs resolves
them. Structures reserved for evaluation (and the demo model) are refused: atomic models by
core.structure_set.reserved, maps through the atomic model they were simulated from when
that is known. The RELION mode's section, step and checks are in training_maps_relion.

One step per structure, each writing its own small pair store (a failed or continued step
starts its structure afresh); the output step links them into one store. The numerics are
in core.training_data; this protocol handles the form, the steps, the outputs and the log.
"""
import json
import os
import shutil
import time

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.protocols import EMProtocol
from pyworkflow.protocol.constants import STEPS_SERIAL

from redprior import Plugin
from redprior.core.training_data import costs
from redprior.core.training_data.ground_truth import ground_truth
from redprior.core.training_data.pairs import structure_rng
from redprior.objects import TrainingPairs
from redprior.protocols.training_maps_form import (
    HELP, MODE_GAUSSIAN, MODE_LABELS, MODE_NAMES, MODE_PERTURBED, MODE_RELION, PAIRS_DIR,
    PARTS_DIR, SOURCE_LABELS, SRC_MAPS, SRC_MODELS, SRC_SHIPPED, STRUCTURES_FILE,
    SUMMARY_FILE)
from redprior.protocols.training_maps_inputs import GroundTruthInputsMixin
from redprior.protocols.training_maps_relion import RelionIntermediatesMixin


class ProtRedPriorTrainingMaps(GroundTruthInputsMixin, RelionIntermediatesMixin, EMProtocol):
    """Make training pairs for the RED denoiser (noisy map, FSC-filtered ground truth).

    Output: TrainingPairs (a folder of pairs streamed by 'train denoiser'). Each mode's cost
    per pair is in the log and in extra/training_maps.json.
    """
    _label = 'training maps'
    _devStatus = BETA
    _possibleOutputs = {'outputPairs': TrainingPairs}

    def __init__(self, **kwargs):
        EMProtocol.__init__(self, **kwargs)
        self.stepsExecutionMode = STEPS_SERIAL  # MPI is for RELION, not for the steps

    # ------------------------------------------------------------------ form
    def _defineParams(self, form):
        self._defineInputParams(form)
        self._definePairParams(form)
        self._defineRelionParams(form)
        form.addParallelSection(threads=1, mpi=3)

    def _defineInputParams(self, form):
        form.addSection(label='Input')
        form.addParam('trainingMode', params.EnumParam, choices=MODE_LABELS,
                      default=MODE_GAUSSIAN, label='Noisy maps from', help=HELP['trainingMode'])
        form.addParam('inputSource', params.EnumParam, choices=SOURCE_LABELS,
                      default=SRC_MAPS, display=params.EnumParam.DISPLAY_HLIST,
                      label='Ground truth from', help=HELP['inputSource'])
        form.addParam('inputVolumes', params.MultiPointerParam,
                      pointerClass='Volume,SetOfVolumes', allowsNull=True, minNumObjects=0,
                      condition='inputSource == %d' % SRC_MAPS,
                      label='Ground-truth maps', help=HELP['inputVolumes'])
        form.addParam('inputParticles', params.MultiPointerParam,
                      pointerClass='SetOfParticles', allowsNull=True, minNumObjects=0,
                      condition='inputSource == %d and trainingMode == %d'
                                % (SRC_MAPS, MODE_RELION),
                      label='Simulated particles (optional)', help=HELP['inputParticles'])
        form.addParam('inputAtomStructs', params.MultiPointerParam,
                      pointerClass='AtomStruct,SetOfAtomStructs', allowsNull=True,
                      minNumObjects=0, condition='inputSource == %d' % SRC_MODELS,
                      label='Atomic models', help=HELP['inputAtomStructs'])
        shipped = 'inputSource == %d' % SRC_SHIPPED
        form.addParam('manifest', params.PathParam, default='', condition=shipped,
                      label='Training-set manifest', help=HELP['manifest'])
        form.addParam('maxStructures', params.IntParam, default=0, condition=shipped,
                      label='Use at most (structures)', help=HELP['maxStructures'])
        notMaps = 'inputSource != %d' % SRC_MAPS
        form.addParam('boxSize', params.IntParam, default=64, condition=notMaps,
                      label='Box size (px)', help=HELP['boxSize'])
        form.addParam('pixelSize', params.FloatParam, default=2.0, condition=notMaps,
                      label='Pixel size (Å)', help=HELP['pixelSize'])

    def _definePairParams(self, form):
        form.addSection(label='Pairs')
        form.addParam('pairsPerStructure', params.IntParam, default=20,
                      validators=[params.GE(0)], label='Pairs per structure',
                      help=HELP['pairsPerStructure'])
        form.addParam('resolutionBest', params.FloatParam, default=3.0,
                      label='Best resolution (Å)', help=HELP['resolutionBest'])
        form.addParam('resolutionWorst', params.FloatParam, default=30.0,
                      label='Worst resolution (Å)')
        form.addParam('seed', params.IntParam, default=0, validators=[params.GE(0)],
                      label='Random seed')
        gauss = 'trainingMode == %d' % MODE_GAUSSIAN
        form.addParam('solventNoise', params.FloatParam, default=0.3, condition=gauss,
                      label='Noise level in the solvent', help=HELP['solventNoise'])
        form.addParam('limitShells', params.BooleanParam, default=True, condition=gauss,
                      label='Limit to RELION\'s current size?', help=HELP['limitShells'])
        pert = 'trainingMode == %d' % MODE_PERTURBED
        form.addParam('particlesPerPair', params.IntParam, default=1000, condition=pert,
                      label='Particles per reconstruction')
        form.addParam('perturbedSnr', params.FloatParam, default=0.05, condition=pert,
                      label='SNR')
        form.addParam('angleErrorMin', params.FloatParam, default=1.0, condition=pert,
                      label='Angular error from (deg)', help=HELP['angleErrorMin'])
        form.addParam('angleErrorMax', params.FloatParam, default=10.0, condition=pert,
                      label='Angular error to (deg)')
        form.addParam('shiftError', params.FloatParam, default=1.0, condition=pert,
                      label='Shift error (Å, rms)')
        form.addParam('bothHalves', params.BooleanParam, default=True, condition=pert,
                      label='Keep both halves?', help=HELP['bothHalves'])

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        structs = self.getStructures()
        # resolved once: reading the shipped manifest parses every model file
        os.makedirs(self._getExtraPath(), exist_ok=True)
        with open(self._getExtraPath(STRUCTURES_FILE), 'w') as fh:
            json.dump(structs, fh, indent=1)
        for i, s in enumerate(structs):
            self._insertFunctionStep(self.structureStep, i, s['id'], needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _runStructures(self):
        path = self._getExtraPath(STRUCTURES_FILE)
        if os.path.exists(path):
            with open(path) as fh:
                return json.load(fh)
        return self.getStructures()

    def structureStep(self, index, structId):
        from redprior.core.training_data.store import PairStore

        s = self._runStructures()[index]
        if s['id'] != structId:
            raise RuntimeError('The inputs changed since the steps were made (structure %d is '
                               '%s, expected %s); start a new run.' % (index, s['id'], structId))
        folder = self._getExtraPath(PARTS_DIR, structId)
        if os.path.exists(folder):  # a re-run step starts its structure afresh
            shutil.rmtree(folder)
        t0 = time.time()
        try:
            gt, pixel = ground_truth(s, self.boxSize.get(), self.pixelSize.get())
        except ValueError as exc:
            if s['kind'] != 'chain':
                raise
            # a shipped chain that does not fit this box (or, against the manifest's own
            # filter, looks reserved): skip it, say so
            self.warning('%s skipped: %s' % (structId, exc))
            costs.write_cost(folder, dict(id=structId, pairs=0, skipped=str(exc)))
            return
        setup = time.time() - t0  # ground truth and reserved check, not the pairs themselves
        rng = structure_rng(self.seed.get(), index)
        mode = self.trainingMode.get()
        with PairStore(folder) as store:
            if mode == MODE_GAUSSIAN:
                extra = self._gaussianPairs(store, structId, gt, pixel, rng)
            elif mode == MODE_PERTURBED:
                extra = self._perturbedPairs(store, structId, gt, pixel, rng)
            else:
                extra = self._relionPairs(store, structId, gt, pixel, rng, index)
        seconds, n = time.time() - t0, len(store)
        cost = costs.structure_cost(structId, s.get('source', s['path']), MODE_NAMES[mode], n,
                                    seconds, setup, store.resolutions(), gt.shape[0], pixel,
                                    **extra)
        costs.write_cost(folder, cost)
        res = cost['resolution']
        self.info('%s: %d %s pairs in %.1f s (%s s per pair; ground truth %.1f s), '
                  'resolutions %s A'
                  % (structId, n, MODE_NAMES[mode], seconds,
                     '%.3g' % (seconds / n) if n else '-', setup,
                     '%.1f-%.1f' % tuple(res) if res else 'n/a'))

    def createOutputStep(self):
        from redprior.core.training_data.store import merge_stores

        structs = self._runStructures()
        folders = [self._getExtraPath(PARTS_DIR, s['id']) for s in structs]
        structCosts = [costs.read_cost(f) or dict(id=s['id'], pairs=0)
                       for f, s in zip(folders, structs)]
        store = merge_stores(folders, self._getExtraPath(PAIRS_DIR))
        if len(store) == 0:
            raise ValueError('No training pairs were made (see the log: every structure was '
                             'skipped or every map fell outside the resolution range).')
        summary = costs.summarise_costs(structCosts, store)
        with open(self._getExtraPath(SUMMARY_FILE), 'w') as fh:
            json.dump(summary, fh, indent=1)
        for mode, m in summary['modes'].items():
            self.info('Cost of %s pairs: %d pairs, %.1f s, %.3g s per pair'
                      % (mode, m['pairs'], m['seconds'], m['seconds_per_pair']))
        pairs = TrainingPairs(folder=store.folder)
        pairs.updateFromStore(store)
        self._defineOutputs(outputPairs=pairs)
        for ptr in self._inputPointers():
            self._defineSourceRelation(ptr, pairs)

    # ------------------------------------------------------------------ modes
    def _gaussianPairs(self, store, sid, gt, pixel, rng):
        from redprior.core.training_data.gaussian import solvent_damped_pairs

        for p in solvent_damped_pairs(gt, pixel, self.pairsPerStructure.get(), rng,
                                      self.resolutionBest.get(), self.resolutionWorst.get(),
                                      solvent_noise=self.solventNoise.get(),
                                      limit_shells=self.limitShells.get()):
            store.add_pair(p, sid, pixel)
        return {}

    def _perturbedPairs(self, store, sid, gt, pixel, rng):
        from redprior.core.training_data.perturbed import perturbed_pose_pairs

        errors = []
        for p in perturbed_pose_pairs(
                gt, pixel, self.pairsPerStructure.get(), rng,
                (self.angleErrorMin.get(), self.angleErrorMax.get()), self.bothHalves.get(),
                n_particles=self.particlesPerPair.get(), snr=self.perturbedSnr.get(),
                shift_error_A=self.shiftError.get()):
            store.add_pair(p, sid, pixel)
            if not p.info.get('other_half'):
                errors.append(round(p.info['angle_error_deg'], 3))
        return dict(angle_errors_deg=errors)

    # ------------------------------------------------------------------ info
    def getResults(self):
        path = self._getExtraPath(SUMMARY_FILE)
        if os.path.exists(path):
            with open(path) as fh:
                return json.load(fh)
        return {}

    @classmethod
    def validateInstallation(cls):
        # Gaussian and perturbed-pose pairs are pure Python: RELION is checked in _validate
        # only for the RELION mode.
        return Plugin.missingPythonPackages('finufft', 'gemmi', 'mrcfile')

    def _validate(self):
        errors = []
        mode = self.trainingMode.get()
        best, worst = self.resolutionBest.get(), self.resolutionWorst.get()
        if not (best and worst and 0 < best < worst):
            errors.append('Best resolution (%s A) must be > 0 and smaller than the worst (%s A).'
                          % (best, worst))
        if mode != MODE_RELION and self.pairsPerStructure.get() < 1:
            errors.append('Pairs per structure must be at least 1.')
        errors += self._validateInputs()
        if mode == MODE_PERTURBED:
            if not 0 < self.angleErrorMin.get() <= self.angleErrorMax.get():
                errors.append('Angular errors must satisfy 0 < from <= to.')
            if self.perturbedSnr.get() <= 0 or self.particlesPerPair.get() < 10:
                errors.append('Perturbed poses need SNR > 0 and at least 10 particles.')
        if mode == MODE_RELION:
            errors += self._validateRelion()
        return errors

    def _summary(self):
        s = self.getResults()
        if not s:
            return ['%s pairs from %s (not finished yet).'
                    % (MODE_LABELS[self.trainingMode.get()],
                       SOURCE_LABELS[self.inputSource.get()])]
        lines = ['%d pairs of %d structures, box %s px at %g A/px'
                 % (s['pairs'], len([c for c in s['structures'] if c.get('pairs')]), s['box'],
                    s['pixel_size'])]
        for mode, m in s['modes'].items():
            lines.append('%s: %d pairs, %.3g s per pair' % (mode, m['pairs'],
                                                            m['seconds_per_pair']))
        if s.get('skipped'):
            lines.append('Skipped: %s' % ', '.join(s['skipped']))
        if self.inputSource.get() == SRC_MAPS and any(
                c.get('source', '').endswith(('.mrc', '.map')) for c in s['structures']):
            lines.append('Maps without a known atomic model could not be checked against the '
                         'reserved structures.')
        return lines

    def _methods(self):
        return ['Training pairs for the denoiser (%s) were made as in Kimanius et al. (2021): '
                'noisy maps with targets low-pass filtered by the FSC of each map.'
                % MODE_LABELS[self.trainingMode.get()]]

    def _citations(self):
        return ['Kimanius2021']
