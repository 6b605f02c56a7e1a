"""The RELION-intermediates mode of 'training maps' (protocol_training_maps): its form
section, its validation, and its step, which refines simulated particles with RELION and our
external-reconstruct program in gaussian --record mode, then makes pairs of the recorded maps
(core.training_data.recorded).
"""
import os
import re
import time

import pyworkflow.protocol.params as params
from pwem.constants import ALIGN_NONE

from redprior import Plugin
from redprior import constants as C
from redprior.protocols.protocol_base import RelionRunnerMixin
from redprior.protocols.training_maps_form import (
    HELP, MODE_RELION, PARTS_DIR, RELION_AUTO, RELION_LABELS, RELION_PLAIN, SRC_MAPS)


class RelionIntermediatesMixin(RelionRunnerMixin):
    """RELION intermediates as training pairs (the paper's main set); mixed into
    ProtRedPriorTrainingMaps, whose form holds the other sections."""

    # ------------------------------------------------------------------ form
    def _defineRelionParams(self, form):
        form.addSection(label='RELION')
        relion = 'trainingMode == %d' % MODE_RELION
        form.addParam('relionRun', params.EnumParam, choices=RELION_LABELS,
                      default=RELION_AUTO, condition=relion, label='Refinement',
                      help=HELP['relionRun'])
        form.addParam('relionIterations', params.IntParam, default=10,
                      condition='%s and relionRun == %d' % (relion, RELION_PLAIN),
                      label='Iterations')
        form.addParam('relionSnrs', params.StringParam, default='0.01', condition=relion,
                      label='SNRs of simulated sets', help=HELP['relionSnrs'])
        form.addParam('relionParticles', params.IntParam, default=2000, condition=relion,
                      label='Particles per simulated set')
        form.addParam('iniHigh', params.FloatParam, default=30.0, condition=relion,
                      label='Initial low-pass (Å)')
        form.addParam('healpixOrder', params.IntParam, default=1, condition=relion,
                      label='Initial HEALPix order')
        form.addParam('keepExternalFiles', params.BooleanParam, default=False,
                      expertLevel=params.LEVEL_ADVANCED, condition=relion,
                      label='Keep RELION\'s B/K files?')

    # ------------------------------------------------------------------ step
    def _relionPairs(self, store, sid, gt, pixel, rng, index):
        from redprior.core.fourier import filters as fourier
        from redprior.core.prior.history import read_log
        from redprior.core.io.mrc import write_map
        from redprior.core.training_data.recorded import recorded_pairs

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
        best, worst = self.resolutionBest.get(), self.resolutionWorst.get()
        pairs, recorded, outside = recorded_pairs(
            recs, gt, pixel, best, worst, self.pairsPerStructure.get(),
            split_halves=self.relionRun.get() == RELION_AUTO)
        for p in pairs:
            store.add_pair(p, sid, pixel)
        if outside:
            self.info('%s: %d recorded maps outside %g-%g A were not kept'
                      % (sid, outside, best, worst))
        return dict(relion_runs=runs, relion_seconds=round(refineSeconds, 1),
                    maps_recorded=recorded, maps_outside_range=outside)

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
        from redprior.core.prior.options import hook_args
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

    # ------------------------------------------------------------------ validation
    def _validateRelion(self):
        errors = self._validateGivenParticles()
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

    def _validateGivenParticles(self):
        vols = list(self._iterItems(self.inputVolumes))
        if not (vols and self._usesGivenParticles()):
            return []
        errors = []
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
