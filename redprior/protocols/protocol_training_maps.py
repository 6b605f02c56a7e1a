"""'training maps': pairs (noisy map x~, FSC-filtered ground truth) to train the RED denoiser.

Kimanius et al. 2021, sec. 3.1 (docs/PAPER.md 1.3). Three modes, all with the paper's target
(the ground truth multiplied per shell by the FSC of x~; core.training_data.pairs):
  * RELION intermediates (the paper's main set): simulated particles are refined by RELION
    with our external-reconstruct program in gaussian --record mode, which saves every
    unregularised map x~ = B/K with its FSC;
  * perturbed-pose reconstructions: half-maps of simulated particles reconstructed at poses
    off by random angular and shift errors (a cheap stand-in for misalignment);
  * Gaussian noise (the paper's second set): shaped noise damped in the solvent.
Ground truths come from maps (e.g. 'simulate particles' outputs), atomic models, or the
shipped training set (redprior/data/training_manifest.json). Structures reserved for
evaluation (and the demo model) are refused: atomic models by core.training_data.structure_set, maps through
the atomic model they were simulated from when that is known.

One step per structure, each writing its own small pair store (a failed or continued step
starts its structure afresh); the output step links them into one store.
"""
import json
import math
import os
import re
import shutil
import time

import numpy as np

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.constants import ALIGN_NONE
from pwem.protocols import EMProtocol
from pyworkflow.protocol.constants import STEPS_SERIAL

from redprior import Plugin
from redprior import constants as C
from redprior.objects import TrainingPairs
from redprior.protocols.protocol_base import RelionRunnerMixin

try:  # written by another part of the project; the protocol still loads without it
    from redprior.core.training_data import structure_set as training_set
except ImportError:  # TODO: remove the guard once core.training_data.structure_set ships everywhere
    training_set = None

SRC_MAPS, SRC_MODELS, SRC_SHIPPED = 0, 1, 2
SOURCE_LABELS = ['ground-truth maps', 'atomic models', 'shipped training set']
MODE_RELION, MODE_PERTURBED, MODE_GAUSSIAN = 0, 1, 2
MODE_LABELS = ['RELION intermediates', 'perturbed-pose reconstructions', 'Gaussian noise']
MODE_NAMES = ['record', 'perturbed_pose', 'gaussian']  # Pair.mode of each
RELION_AUTO, RELION_PLAIN = 0, 1
RELION_LABELS = ['auto-refine (relion_refine_mpi, gold-standard halves)',
                 'fixed iterations (relion_refine, one map per iteration)']
PAIRS_DIR = 'pairs'
PARTS_DIR = 'parts'
COST_FILE = 'cost.json'
SUMMARY_FILE = 'training_maps.json'
STRUCTURES_FILE = 'structures.json'


def _plainPath(fn):
    return fn[:-4] if fn and fn.endswith(':mrc') else fn


def _safeId(text):
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', str(text)).strip('_') or 'structure'


def simulationInfo(mapPath):
    """simulation.json of a 'simulate particles' ground truth ({} for other maps).

    That protocol writes it next to its ground_truth.mrc.
    """
    info = os.path.join(os.path.dirname(mapPath or ''), C.SIM_JSON)
    if not os.path.exists(info):
        return {}
    with open(info) as fh:
        return json.load(fh)


def simulationSource(mapPath):
    """The atomic model a 'simulate particles' ground truth was computed from, or None."""
    data = simulationInfo(mapPath)
    if data.get('source') == 'atomic model' and data.get('source_file'):
        return data['source_file']
    return None


def equivalentHalfFsc(x, gt):
    """FSC a half-map of x's quality would show: FSC(x, gt)^2 (per shell, clipped to [0, 1]).

    For x = gt + noise with spectral SNR s, FSC(x, gt) = sqrt(s / (1 + s)) and two such
    independent halves have FSC s / (1 + s): the Wiener weight of x itself, i.e. the target
    filter appendix A asks for. Used when RELION gives no gold-standard FSC (no split halves).
    """
    from redprior.core.fourier.fsc import fsc
    return np.clip(fsc(np.asarray(x, np.float64), np.asarray(gt, np.float64)), 0.0, 1.0) ** 2


class ProtRedPriorTrainingMaps(RelionRunnerMixin, EMProtocol):
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
        form.addSection(label='Input')
        form.addParam('trainingMode', params.EnumParam, choices=MODE_LABELS,
                      default=MODE_GAUSSIAN, label='Noisy maps from',
                      help='RELION intermediates: the paper\'s main set (slow: one refinement '
                           'per structure and SNR). Perturbed poses: reconstructions of '
                           'simulated particles at wrong poses (seconds per pair). Gaussian '
                           'noise: the paper\'s second set (fastest).')
        form.addParam('inputSource', params.EnumParam, choices=SOURCE_LABELS,
                      default=SRC_MAPS, display=params.EnumParam.DISPLAY_HLIST,
                      label='Ground truth from',
                      help='Maps: e.g. the ground truth of "simulate particles" (its box and '
                           'pixel size are used; all maps must share them). Atomic models: '
                           'turned into scattering potentials at the box and pixel size below. '
                           'Shipped training set: the structures of '
                           'redprior/data/training_manifest.json. Structures reserved for '
                           'evaluation and the demo model are refused.')
        form.addParam('inputVolumes', params.MultiPointerParam,
                      pointerClass='Volume,SetOfVolumes', allowsNull=True, minNumObjects=0,
                      condition='inputSource == %d' % SRC_MAPS,
                      label='Ground-truth maps',
                      help='Each map is one structure (the validation split of "train '
                           'denoiser" keeps structures apart).')
        form.addParam('inputParticles', params.MultiPointerParam,
                      pointerClass='SetOfParticles', allowsNull=True, minNumObjects=0,
                      condition='inputSource == %d and trainingMode == %d'
                                % (SRC_MAPS, MODE_RELION),
                      label='Simulated particles (optional)',
                      help='RELION intermediates only: particles simulated from each map, in '
                           'the same order (e.g. the outputs of "simulate particles"). Empty: '
                           'particles are simulated here (see the RELION section).')
        form.addParam('inputAtomStructs', params.MultiPointerParam,
                      pointerClass='AtomStruct,SetOfAtomStructs', allowsNull=True,
                      minNumObjects=0, condition='inputSource == %d' % SRC_MODELS,
                      label='Atomic models',
                      help='Each model (all its chains) is one structure.')
        form.addParam('manifest', params.PathParam, default='',
                      condition='inputSource == %d' % SRC_SHIPPED,
                      label='Training-set manifest',
                      help='Empty: the one shipped with redprior. Chains whose package is '
                           'not installed are skipped (the log names the install command).')
        form.addParam('maxStructures', params.IntParam, default=0,
                      condition='inputSource == %d' % SRC_SHIPPED,
                      label='Use at most (structures)', help='0: all of them.')
        form.addParam('boxSize', params.IntParam, default=64,
                      condition='inputSource != %d' % SRC_MAPS, label='Box size (px)',
                      help='Even; a multiple of 2^levels of the U-Net to be trained (16 for '
                           'the default 4 levels).')
        form.addParam('pixelSize', params.FloatParam, default=2.0,
                      condition='inputSource != %d' % SRC_MAPS, label='Pixel size (A)',
                      help='The denoiser is used at this pixel size (within a factor 2).')

        form.addSection(label='Pairs')
        form.addParam('pairsPerStructure', params.IntParam, default=20,
                      validators=[params.GE(0)], label='Pairs per structure',
                      help='RELION intermediates: at most this many of the recorded maps, '
                           'evenly spaced (0: all).')
        form.addParam('resolutionBest', params.FloatParam, default=3.0,
                      label='Best resolution (A)',
                      help='Gaussian noise: nominal resolutions are drawn log-uniformly '
                           'between best and worst (clamped to what the box can show). RELION '
                           'intermediates: maps outside the range are not kept.')
        form.addParam('resolutionWorst', params.FloatParam, default=30.0,
                      label='Worst resolution (A)')
        form.addParam('seed', params.IntParam, default=0, validators=[params.GE(0)],
                      label='Random seed')

        form.addParam('solventNoise', params.FloatParam, default=0.3,
                      condition='trainingMode == %d' % MODE_GAUSSIAN,
                      label='Noise level in the solvent',
                      help='The noise is multiplied by this outside a soft mask of the '
                           'ground truth (the paper damps solvent noise).')
        form.addParam('limitShells', params.BooleanParam, default=True,
                      condition='trainingMode == %d' % MODE_GAUSSIAN,
                      label='Limit to RELION\'s current size?',
                      help='Keep only the shells up to the nominal resolution + 10, as RELION\'s '
                           'intermediates do.')

        form.addParam('particlesPerPair', params.IntParam, default=1000,
                      condition='trainingMode == %d' % MODE_PERTURBED,
                      label='Particles per reconstruction')
        form.addParam('perturbedSnr', params.FloatParam, default=0.05,
                      condition='trainingMode == %d' % MODE_PERTURBED, label='SNR')
        form.addParam('angleErrorMin', params.FloatParam, default=1.0,
                      condition='trainingMode == %d' % MODE_PERTURBED,
                      label='Angular error from (deg)',
                      help='rms angular error of each reconstruction, drawn log-uniformly '
                           'in [from, to].')
        form.addParam('angleErrorMax', params.FloatParam, default=10.0,
                      condition='trainingMode == %d' % MODE_PERTURBED,
                      label='Angular error to (deg)')
        form.addParam('shiftError', params.FloatParam, default=1.0,
                      condition='trainingMode == %d' % MODE_PERTURBED,
                      label='Shift error (A, rms)')
        form.addParam('bothHalves', params.BooleanParam, default=True,
                      condition='trainingMode == %d' % MODE_PERTURBED,
                      label='Keep both halves?',
                      help='Each reconstruction gives two half-maps with the same target: '
                           'two pairs for the cost of one.')

        form.addSection(label='RELION')
        form.addParam('relionRun', params.EnumParam, choices=RELION_LABELS,
                      default=RELION_AUTO, condition='trainingMode == %d' % MODE_RELION,
                      label='Refinement',
                      help='Auto-refine: the paper\'s setting, half-maps with their '
                           'gold-standard FSC (needs MPI >= 3). Fixed iterations: plain '
                           'relion_refine without halves; the FSC of each map is then '
                           'FSC(x~, ground truth)^2, the FSC two halves of its quality would '
                           'show.')
        form.addParam('relionIterations', params.IntParam, default=10,
                      condition='trainingMode == %d and relionRun == %d'
                                % (MODE_RELION, RELION_PLAIN),
                      label='Iterations')
        form.addParam('relionSnrs', params.StringParam, default='0.01',
                      condition='trainingMode == %d' % MODE_RELION,
                      label='SNRs of simulated sets',
                      help='One simulated set and refinement per value (the paper: 0.0003-0.01). '
                           'Not used when particles are given.')
        form.addParam('relionParticles', params.IntParam, default=2000,
                      condition='trainingMode == %d' % MODE_RELION,
                      label='Particles per simulated set')
        form.addParam('iniHigh', params.FloatParam, default=30.0,
                      condition='trainingMode == %d' % MODE_RELION,
                      label='Initial low-pass (A)')
        form.addParam('healpixOrder', params.IntParam, default=1,
                      condition='trainingMode == %d' % MODE_RELION,
                      label='Initial HEALPix order')
        form.addParam('keepExternalFiles', params.BooleanParam, default=False,
                      expertLevel=params.LEVEL_ADVANCED,
                      condition='trainingMode == %d' % MODE_RELION,
                      label='Keep RELION\'s B/K files?')
        form.addParallelSection(threads=1, mpi=3)

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
        from redprior.core.training_data.pairs import PairStore

        s = self._runStructures()[index]
        if s['id'] != structId:
            raise RuntimeError('The inputs changed since the steps were made (structure %d is '
                               '%s, expected %s); start a new run.' % (index, s['id'], structId))
        folder = self._getExtraPath(PARTS_DIR, structId)
        if os.path.exists(folder):  # a re-run step starts its structure afresh
            shutil.rmtree(folder)
        t0 = time.time()
        try:
            gt, pixel = self._groundTruth(s)
        except ValueError as exc:
            if s['kind'] != 'chain':
                raise
            # a shipped chain that does not fit this box (or, against the manifest's own
            # filter, looks reserved): skip it, say so
            self.warning('%s skipped: %s' % (structId, exc))
            self._writeCost(folder, dict(id=structId, pairs=0, skipped=str(exc)))
            return
        setup = time.time() - t0  # ground truth and reserved check, not the pairs themselves
        rng = np.random.default_rng([self.seed.get(), index])
        mode = self.trainingMode.get()
        with PairStore(folder) as store:
            if mode == MODE_GAUSSIAN:
                extra = self._gaussianPairs(store, structId, gt, pixel, rng)
            elif mode == MODE_PERTURBED:
                extra = self._perturbedPairs(store, structId, gt, pixel, rng)
            else:
                extra = self._relionPairs(store, structId, gt, pixel, rng, s, index)
            res = [r for r in store.resolutions() if math.isfinite(r)]
        seconds = time.time() - t0
        n = len(store)
        cost = dict(id=structId, source=s.get('source', s['path']), mode=MODE_NAMES[mode],
                    pairs=n, seconds=round(seconds, 3), setup_seconds=round(setup, 3),
                    seconds_per_pair=round(seconds / n, 4) if n else None,
                    resolution=[min(res), max(res)] if res else None, box=int(gt.shape[0]),
                    pixel_size=pixel, **extra)
        self._writeCost(folder, cost)
        self.info('%s: %d %s pairs in %.1f s (%s s per pair; ground truth %.1f s), '
                  'resolutions %s A'
                  % (structId, n, MODE_NAMES[mode], seconds,
                     '%.3g' % (seconds / n) if n else '-', setup,
                     '%.1f-%.1f' % (min(res), max(res)) if res else 'n/a'))

    def createOutputStep(self):
        from redprior.core.training_data.pairs import PairStore

        final = self._getExtraPath(PAIRS_DIR)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.makedirs(final)
        costs, idx = [], 0
        for s in self._runStructures():
            folder = self._getExtraPath(PARTS_DIR, s['id'])
            costs.append(self._readCost(folder) or dict(id=s['id'], pairs=0))
            if not os.path.exists(os.path.join(folder, PairStore.MANIFEST)):
                continue
            for e in PairStore(folder).entries:
                dst = os.path.join(final, 'pair_%06d.npz' % idx)
                try:  # a hard link: no copy of possibly large maps
                    os.link(os.path.join(folder, e['file']), dst)
                except OSError:
                    shutil.copy2(os.path.join(folder, e['file']), dst)
                idx += 1
        store = PairStore(final)  # finds the linked pairs and writes the manifest
        if len(store) == 0:
            raise ValueError('No training pairs were made (see the log: every structure was '
                             'skipped or every map fell outside the resolution range).')
        summary = self._summariseCosts(costs, store)
        with open(self._getExtraPath(SUMMARY_FILE), 'w') as fh:
            json.dump(summary, fh, indent=1)
        for mode, m in summary['modes'].items():
            self.info('Cost of %s pairs: %d pairs, %.1f s, %.3g s per pair'
                      % (mode, m['pairs'], m['seconds'], m['seconds_per_pair']))
        pairs = TrainingPairs(folder=final)
        pairs.updateFromStore(store)
        self._defineOutputs(outputPairs=pairs)
        for ptr in self._inputPointers():
            self._defineSourceRelation(ptr, pairs)

    # ------------------------------------------------------------------ modes
    def _gaussianPairs(self, store, sid, gt, pixel, rng):
        from redprior.core.geometry.masks import solvent_mask
        from redprior.core.training_data.pairs import RELION_INCR_SHELLS, gaussian_pairs

        mask = solvent_mask(gt, pixel)
        extra = RELION_INCR_SHELLS if self.limitShells.get() else None
        for p in gaussian_pairs(gt, pixel, self.pairsPerStructure.get(), rng,
                                self.resolutionBest.get(), self.resolutionWorst.get(), mask,
                                solvent_noise=self.solventNoise.get(), extra_shells=extra):
            store.add_pair(p, sid, pixel)
        return {}

    def _perturbedPairs(self, store, sid, gt, pixel, rng):
        from redprior.core.training_data.pairs import perturbed_pose_pair

        n = self.pairsPerStructure.get()
        both = self.bothHalves.get()
        lo, hi = self.angleErrorMin.get(), self.angleErrorMax.get()
        errors = []
        while len(store) < n:
            ang = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
            p = perturbed_pose_pair(gt, pixel, self.particlesPerPair.get(),
                                    snr=self.perturbedSnr.get(), angle_error_deg=ang,
                                    shift_error_A=self.shiftError.get(), rng=rng)
            store.add_pair(p, sid, pixel)
            if both and len(store) < n:  # the other half: same target and FSC
                store.add(p.info['x2'], p.target, p.fsc, p.resolution, sid, pixel, p.mode)
            errors.append(round(ang, 3))
        return dict(angle_errors_deg=errors)

    def _relionPairs(self, store, sid, gt, pixel, rng, s, index):
        from redprior.core.fourier import filters as fourier
        from redprior.core.prior.exrecon import read_log
        from redprior.core.io.mrc import write_map

        base = self._getExtraPath(PARTS_DIR, sid, 'relion')
        os.makedirs(base, exist_ok=True)
        write_map(os.path.join(base, 'reference.mrc'),
                  fourier.lowpass(gt, pixel, self.iniHigh.get()), pixel)
        runs, refineSeconds, recs = [], 0.0, []
        for k, (star, cwd, ctf) in enumerate(self._particleSets(base, gt, pixel, rng, index)):
            out = os.path.join(base, 'run%02d' % k)
            os.makedirs(out, exist_ok=True)
            rec = os.path.abspath(os.path.join(out, 'records'))
            t0 = time.time()
            self._runRelion(cwd, star, os.path.join(base, 'reference.mrc'), out, rec, pixel, ctf)
            refineSeconds += time.time() - t0
            calls = [r for r in read_log(os.path.join(out, 'exrecon_log.jsonl'))
                     if 'error' not in r]
            runs.append(dict(star=os.path.relpath(star, base), calls=len(calls),
                             seconds=round(time.time() - t0, 1)))
            self.info('RELION run %d of %s: %d calls of the hook in %.0f s'
                      % (k, sid, len(calls), time.time() - t0))
            recs.append(rec)
        recorded, outside = self._recordsToPairs(store, sid, gt, pixel, recs)
        if outside:
            self.info('%s: %d recorded maps outside %g-%g A were not kept'
                      % (sid, outside, self.resolutionBest.get(), self.resolutionWorst.get()))
        return dict(relion_runs=runs, relion_seconds=round(refineSeconds, 1),
                    maps_recorded=recorded, maps_outside_range=outside)

    def _recordsToPairs(self, store, sid, gt, pixel, recFolders):
        from redprior.core.io.mrc import read_map
        from redprior.core.fourier.fsc import read_resolution
        from redprior.core.training_data.pairs import FSC_THRESHOLD, pair_from_record, record_files

        split = self.relionRun.get() == RELION_AUTO
        cands = []
        for m, j in [f for folder in recFolders for f in record_files(folder)]:
            if split and '_half0_' in os.path.basename(m):
                continue  # the final joined map: the half-map FSC does not describe it
            with open(j) as fh:
                info = json.load(fh)
            x, _ = read_map(m)
            fsc = np.asarray(info.get('fsc') or [0.0], dtype=np.float64)
            if not split or not np.any(fsc[1:] > FSC_THRESHOLD):
                # no gold-standard FSC from RELION (no halves): the equivalent from the truth
                fsc = equivalentHalfFsc(x, gt)
                info = dict(info, fsc=fsc.tolist(),
                            resolution=read_resolution(fsc, x.shape[0], pixel,
                                                       FSC_THRESHOLD).bound_A)
            cands.append((x, info))
        best, worst = self.resolutionBest.get(), self.resolutionWorst.get()
        inside = [(x, i) for x, i in cands
                  if i.get('resolution') is not None and best <= i['resolution'] <= worst]
        outside = len(cands) - len(inside)
        n = self.pairsPerStructure.get()
        if n and len(inside) > n:  # evenly spaced over the refinement(s)
            inside = [inside[int(i)] for i in np.linspace(0, len(inside) - 1, n).round()]
        for x, info in inside:
            store.add_pair(pair_from_record(x, info, gt, pixel), sid, pixel)
        return len(cands), outside

    def _particleSets(self, base, gt, pixel, rng, index):
        """[(star path, working directory for RELION, has CTF)] of the sets to refine."""
        given = [p.get() for p in self.inputParticles] if self._usesGivenParticles() else []
        if given:
            from relion.convert import writeSetOfParticles
            parts = given[index]
            star = os.path.join(base, 'particles.star')
            # the refine protocol's convention: paths relative to the project folder
            writeSetOfParticles(parts, star, outputDir=base, alignType=ALIGN_NONE)
            return [(star, None, parts.hasCTF())]
        from redprior.core.io import star_particles as particles_star
        from redprior.core.simulation import particles as simulate
        out = []
        for k, snr in enumerate(self._snrs()):
            sim = simulate.simulate_particles(gt, pixel, self.relionParticles.get(), snr=snr,
                                              seed=int(rng.integers(2 ** 31)))
            star = particles_star.write_particles(sim, pixel, base, name='particles_snr%d' % k)
            self.info('Simulated %d particles at SNR %g (measured %.4g)'
                      % (len(sim), snr, sim.snr_measured))
            # image names are relative to the STAR's folder: RELION runs there
            out.append((star, base, False))
        return out

    def _runRelion(self, cwd, star, ref, out, recFolder, pixel, ctf):
        from redprior.core.prior.exrecon import hook_args
        from redprior.core.relion.command import RefineSettings, refine_args

        work = os.path.abspath(cwd) if cwd else os.getcwd()
        rel = lambda p: os.path.relpath(os.path.abspath(p), work)
        hook = hook_args('gaussian', pixel, os.path.abspath(os.path.join(out, 'exrecon_log.jsonl')),
                         record=recFolder, keep=self.keepExternalFiles.get())
        box = int(self._boxAndPixel()[0])
        auto = self.relionRun.get() == RELION_AUTO
        settings = RefineSettings(
            output_root=rel(os.path.join(out, 'run')), particles_star=rel(star),
            reference=rel(ref), mask_diameter_A=0.9 * box * pixel, ini_high_A=self.iniHigh.get(),
            auto_refine=auto, iterations=self.relionIterations.get(),
            healpix_order=self.healpixOrder.get(), threads=self.numberOfThreads.get(),
            # RELION skips its particle-order randomisation for seed 0
            random_seed=self.seed.get() + 1, pad=2, ctf=ctf)
        self._runRelionRefine(refine_args(settings), hook,
                              self.numberOfMpi.get() if auto else 1, cwd=work)

    # ------------------------------------------------------------------ inputs
    def _usesGivenParticles(self):
        return (self.inputSource.get() == SRC_MAPS and self.trainingMode.get() == MODE_RELION
                and any(p.get() is not None for p in self.inputParticles))

    def _snrs(self):
        return [float(v) for v in re.split(r'[\s,;]+', self.relionSnrs.get() or '') if v]

    def _inputPointers(self):
        src = self.inputSource.get()
        if src == SRC_MAPS:
            return [p for p in self.inputVolumes if p.get() is not None]
        if src == SRC_MODELS:
            return [p for p in self.inputAtomStructs if p.get() is not None]
        return []

    def _iterItems(self, pointers):
        for ptr in pointers:
            obj = ptr.get()
            if obj is None:
                continue
            if hasattr(obj, 'iterItems'):  # SetOfVolumes / SetOfAtomStructs
                for item in obj.iterItems():
                    yield item.clone()
            else:
                yield obj

    def getStructures(self):
        """[{id, kind ('map' | 'model' | 'chain'), path, ...}] in input order (JSON-able)."""
        src = self.inputSource.get()
        out = []
        if src == SRC_MAPS:
            for vol in self._iterItems(self.inputVolumes):
                path = _plainPath(vol.getFileName())
                model = simulationSource(path)
                # a simulated ground truth is named after what it was simulated from
                name = os.path.basename(simulationInfo(path).get('source_file') or path)
                out.append(dict(kind='map', path=path, name=name, source=model or path,
                                pixel=vol.getSamplingRate()))
        elif src == SRC_MODELS:
            for obj in self._iterItems(self.inputAtomStructs):
                path = obj.getFileName()
                out.append(dict(kind='model', path=path, name=os.path.basename(path),
                                source=path))
        else:
            chains = self._shippedChains()
            if self.maxStructures.get() > 0:
                chains = chains[:self.maxStructures.get()]
            for c in chains:
                out.append(dict(kind='chain', path=c.path, chain=c.chain, entry=c.entry,
                                name=c.id, source=c.id))
        for i, s in enumerate(out):
            name = re.sub(r'\.(pdb|cif|ent|mrc|map)(\.gz)?$', '', s['name'], flags=re.I)
            s['id'] = 's%03d_%s' % (i, _safeId(name))
        return out

    def _manifestPath(self):
        if self.manifest.get():
            return self.manifest.get()
        return getattr(training_set, 'MANIFEST', None) if training_set else None

    def _shippedChains(self):
        if training_set is None or not hasattr(training_set, 'load_training_chains'):
            raise RuntimeError('redprior.core.training_data.structure_set is not available: the shipped '
                               'training set cannot be used.')
        return training_set.load_training_chains(self._manifestPath())

    def _boxAndPixel(self):
        if self.inputSource.get() == SRC_MAPS:
            for vol in self._iterItems(self.inputVolumes):
                return vol.getXDim(), vol.getSamplingRate()
            return None, None
        return self.boxSize.get(), self.pixelSize.get()

    def _groundTruth(self, s):
        """(map, pixel size) of one structure; refuses reserved structures (defence in depth:
        _validate checks too, but a run can be started without it)."""
        from redprior.core.io import mrc as mrcio
        from redprior.core.simulation import structure
        if s['kind'] == 'map':
            if s['source'] != s['path']:
                self._checkReserved(s['source'])
            vol, header = mrcio.read_map(s['path'])
            mrcio.check_cube(vol, s['path'])
            return vol.astype(np.float64), float(s.get('pixel') or header)
        box, pixel = self.boxSize.get(), self.pixelSize.get()
        if s['kind'] == 'model':
            self._checkReserved(s['path'])
            return structure.potential_map(s['path'], box, pixel).astype(np.float64), pixel
        chain = training_set.TrainingChain(s['name'], s['path'], s['chain'], s['entry'], 0.0, 0,
                                           '')
        st = chain.structure()
        self._checkReserved(st, label=s['name'])
        return structure.potential_map(st, box, pixel).astype(np.float64), pixel

    def _checkReserved(self, pathOrStructure, label=None, reserved=None):
        if training_set is None:
            raise RuntimeError('redprior.core.training_data.structure_set is not available: atomic models '
                               'cannot be checked against the reserved structures.')
        try:
            return training_set.check_not_reserved(pathOrStructure, reserved=reserved)
        except ValueError as exc:
            raise ValueError('%s%s' % ('%s: ' % label if label else '', exc)) from exc

    # ------------------------------------------------------------------ costs
    def _writeCost(self, folder, cost):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, COST_FILE), 'w') as fh:
            json.dump(cost, fh, indent=1)

    def _readCost(self, folder):
        path = os.path.join(folder, COST_FILE)
        if os.path.exists(path):
            with open(path) as fh:
                return json.load(fh)
        return None

    def _summariseCosts(self, costs, store):
        modes = {}
        for c in costs:
            if not c.get('pairs'):
                continue
            m = modes.setdefault(c['mode'], dict(pairs=0, seconds=0.0))
            m['pairs'] += c['pairs']
            m['seconds'] += c['seconds']
        for m in modes.values():
            m['seconds_per_pair'] = m['seconds'] / m['pairs']
        return dict(pairs=len(store), box=store.box, pixel_size=store.pixel_size,
                    structures=costs, modes=modes,
                    skipped=[c['id'] for c in costs if c.get('skipped')])

    def getSummary(self):
        path = self._getExtraPath(SUMMARY_FILE)
        if os.path.exists(path):
            with open(path) as fh:
                return json.load(fh)
        return {}

    # ------------------------------------------------------------------ info
    @classmethod
    def validateInstallation(cls):
        # Gaussian and perturbed-pose pairs are pure Python: RELION is checked in _validate
        # only for the RELION mode.
        return Plugin.missingPythonPackages('finufft', 'gemmi', 'mrcfile')

    def _validate(self):
        errors = []
        src, mode = self.inputSource.get(), self.trainingMode.get()
        best, worst = self.resolutionBest.get(), self.resolutionWorst.get()
        if not (best and worst and 0 < best < worst):
            errors.append('Best resolution (%s A) must be > 0 and smaller than the worst (%s A).'
                          % (best, worst))
        if mode != MODE_RELION and self.pairsPerStructure.get() < 1:
            errors.append('Pairs per structure must be at least 1.')
        if src == SRC_MAPS:
            errors += self._validateMaps()
        elif src == SRC_MODELS:
            errors += self._validateModels()
        else:
            errors += self._validateShipped()
        if src != SRC_MAPS:
            box, pixel = self.boxSize.get(), self.pixelSize.get()
            if not box or box % 2 or box < C.MIN_BOX:
                errors.append('Box size must be an even number of at least %d px (got %s).'
                              % (C.MIN_BOX, box))
            if not pixel or pixel <= 0:
                errors.append('Pixel size must be > 0 A.')
        if mode == MODE_PERTURBED:
            if not 0 < self.angleErrorMin.get() <= self.angleErrorMax.get():
                errors.append('Angular errors must satisfy 0 < from <= to.')
            if self.perturbedSnr.get() <= 0 or self.particlesPerPair.get() < 10:
                errors.append('Perturbed poses need SNR > 0 and at least 10 particles.')
        if mode == MODE_RELION:
            errors += self._validateRelion()
        return errors

    def _validateMaps(self):
        errors = []
        vols = list(self._iterItems(self.inputVolumes))
        if not vols:
            return ['Give at least one ground-truth map.']
        dims = {(v.getXDim(), round(v.getSamplingRate() or 0, 4)) for v in vols}
        for v in vols:
            x, y, z = v.getDim()
            if not (x == y == z) or x % 2:
                errors.append('%s: maps must be cubic with an even box (got %dx%dx%d).'
                              % (v.getFileName(), x, y, z))
        if len(dims) > 1:
            errors.append('All maps must have the same box and pixel size (got %s): the '
                          'denoiser is trained at one of each.'
                          % ', '.join('%d px at %g A/px' % d for d in sorted(dims)))
        if any(not v.getSamplingRate() for v in vols):
            errors.append('A map has no pixel size; set it on import.')
        reserved = self._reservedChains(errors)
        for v in vols:
            model = simulationSource(_plainPath(v.getFileName()))
            if model is not None and reserved is not None:
                errors += self._reservedErrors(model, reserved, 'The map %s was simulated from '
                                               'an excluded model: ' % v.getFileName())
        if self._usesGivenParticles():
            parts = [p.get() for p in self.inputParticles]
            if len(parts) != len(vols) or any(p is None for p in parts):
                errors.append('Give one particle set per ground-truth map, in the same order '
                              '(%d maps, %d particle sets), or none.' % (len(vols), len(parts)))
            else:
                for v, p in zip(vols, parts):
                    if p.getXDim() != v.getXDim() or abs(
                            p.getSamplingRate() - v.getSamplingRate()) > 1e-3 * v.getSamplingRate():
                        errors.append('Particles %s (%d px, %g A/px) do not match their map '
                                      '(%d px, %g A/px).' % (p.getObjLabel() or p.getObjId(),
                                                            p.getXDim(), p.getSamplingRate(),
                                                            v.getXDim(), v.getSamplingRate()))
        return errors

    def _validateModels(self):
        from redprior.core.simulation import structure
        models = list(self._iterItems(self.inputAtomStructs))
        if not models:
            return ['Give at least one atomic model.']
        errors = []
        reserved = self._reservedChains(errors)
        box, pixel = self.boxSize.get(), self.pixelSize.get()
        for m in models:
            path = m.getFileName()
            if reserved is not None:
                errors += self._reservedErrors(path, reserved)
            try:
                summary = structure.structure_summary(structure.read_structure(path))
            except ValueError as exc:
                errors.append(str(exc))
                continue
            if box and pixel and pixel > 0:
                need = structure.min_box_for(summary['max_radius_A'], pixel)
                if box < need:
                    errors.append('%s does not fit in a box of %d px at %g A/px: use a box of '
                                  'at least %d px.' % (os.path.basename(path), box, pixel, need))
        return errors

    def _validateShipped(self):
        if training_set is None or not hasattr(training_set, 'load_training_chains'):
            # TODO: drop once redprior.core.training_data.structure_set is part of every installation
            return ['The shipped training set needs redprior.core.training_data.structure_set, which is not '
                    'installed.']
        path = self._manifestPath()
        if not path or not os.path.exists(path):
            return ['The training-set manifest %s does not exist (it is built by '
                    'scripts/build_training_set.py).' % path]
        return []

    def _reservedChains(self, errors):
        if training_set is None:
            errors.append('redprior.core.training_data.structure_set is not available: inputs cannot be checked '
                          'against the structures reserved for evaluation.')
            return None
        try:
            return training_set.load_reserved()
        except Exception as exc:  # e.g. a reserved file neither installed nor in the manifest
            errors.append('Cannot load the reserved structures: %s' % exc)
            return None

    def _reservedErrors(self, path, reserved, prefix=''):
        try:
            self._checkReserved(path, reserved=reserved)
        except (ValueError, RuntimeError) as exc:
            return [prefix + str(exc)]
        return []

    def _validateRelion(self):
        from redprior import Plugin
        errors = []
        auto = self.relionRun.get() == RELION_AUTO
        prog = C.RELION_REFINE_MPI if auto else C.RELION_REFINE
        if Plugin.getRelionProgram(prog) is None:
            errors.append('%s not found: %s.' % (prog, C.RELION_INSTALL_HINT))
        if auto and self.numberOfMpi.get() < 3:
            errors.append('Auto-refine with gold-standard halves needs at least 3 MPI processes '
                          '(1 leader + 2 halves); set MPI to 3 or more, or use fixed iterations.')
        if not auto and self.relionIterations.get() < 1:
            errors.append('Iterations must be at least 1.')
        if not self._usesGivenParticles():
            try:
                snrs = self._snrs()
            except ValueError:
                snrs = []
            if not snrs or any(v <= 0 for v in snrs):
                errors.append('SNRs of simulated sets: give one or more positive numbers '
                              '(got "%s").' % self.relionSnrs.get())
            if self.relionParticles.get() < 10:
                errors.append('Simulate at least 10 particles per set.')
        return errors

    def _summary(self):
        s = self.getSummary()
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
