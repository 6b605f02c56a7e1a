"""'resolution and validation report': FSCs, overestimation check and pose errors of a refinement.

The numerics live in redprior.core (validation, angles, report); this protocol reads the
inputs, runs the steps and turns the results into Scipion outputs and a report in extra/.
"""
import os

import numpy as np

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.constants import ALIGN_PROJ
from pwem.objects import SetOfFSCs
from pwem.protocols import EMProtocol

from redprior.objects import RedPriorFSC
from redprior import Plugin
from redprior.convert import halfMapPaths, mapsProblems, posesFromSet, readCube, volumePath
from redprior.core.io.jsonfile import read_json, write_json

MAPS_JSON = 'validation_maps.json'
POSES_JSON = 'validation_poses.json'
RESULTS_JSON = 'validation.json'
AUTO_MASK = 'auto_mask.mrc'


class ProtRedPriorValidate(EMProtocol):
    """Resolution and validation report of a refined map with half-maps.

    Half-map FSC (unmasked, masked, phase-randomised masked and corrected as in
    relion_postprocess), FSC to a ground truth (masked, as in Kimanius et al. 2021), the
    resolution at 0.143 and 0.5 of each (a curve that never crosses is said so), per-particle
    angular (symmetry-aware) and shift errors against true poses, and a check that the
    half-map resolution is not better than what the ground truth (or the unregularised
    half-maps) supports. Writes report.html, report.pdf, PNGs and validation.json in extra/.
    """
    _label = 'resolution and validation report'
    _devStatus = BETA
    _possibleOutputs = {'outputFSCs': SetOfFSCs}

    # ------------------------------------------------------------------ form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputVolume', params.PointerParam, pointerClass='Volume',
                      important=True, label='Refined map (with half-maps)',
                      help='A 3D auto-refine output, or a map imported with "Set half maps". '
                           'The two unfiltered half-maps are what is validated; the map '
                           'compared with the ground truth is their average.')
        form.addParam('groundTruth', params.PointerParam, pointerClass='Volume',
                      allowsNull=True, label='Ground-truth map (optional)',
                      help='Same box, pixel size and frame as the refined map (e.g. the '
                           'ground truth of "simulate particles"). Gives the FSC to the '
                           'ground truth and the overestimation check.')
        form.addParam('inputMask', params.PointerParam, pointerClass='VolumeMask',
                      allowsNull=True, label='Mask (optional)',
                      help='Soft solvent mask with values in [0, 1]. Empty: an automatic '
                           'soft mask (15 A low-pass, 10 % of the maximum, +3 A, 6 A soft '
                           'edge) of the ground truth when given, else of the half-map '
                           'average. Use the same mask to compare refinements.')
        form.addParam('symmetry', params.StringParam, default='C1', label='Symmetry',
                      help='RELION point group (Cn, Dn, T, O, I, I1-I4) used for the angular '
                           'errors: symmetry-equivalent poses count as correct.')
        form.addParam('randomiseFrom', params.FloatParam, default=-1.0,
                      label='Randomise phases from (Å)',
                      help='Phase randomisation for the masked-FSC correction '
                           '(relion_postprocess). -1: from the first shell where the '
                           'unmasked half-map FSC drops below 0.8.')

        form.addSection(label='Poses')
        form.addParam('trueParticles', params.PointerParam, pointerClass='SetOfParticles',
                      allowsNull=True, label='Particles with true poses (optional)',
                      help='E.g. the output of "simulate particles" (3D projection '
                           'alignment).')
        form.addParam('refinedParticles', params.PointerParam, pointerClass='SetOfParticles',
                      allowsNull=True, label='Refined particles (optional)',
                      help='The refinement\'s output particles. Particles are matched by '
                           'their id; only the ones in both sets are compared.')
        form.addParam('alignFrames', params.BooleanParam, default=False,
                      label='Align the pose frames first?',
                      help='No: the refinement is in the frame of the true poses (it started '
                           'from the ground truth low-passed). Yes: first find the global '
                           'rotation that best maps the refined poses onto the true ones '
                           '(robust mean, symmetry-aware), e.g. after a de novo initial '
                           'model. The hand is checked in both cases.')

        form.addSection(label='Overestimation')
        form.addParam('unregHalf1', params.PathParam, default='',
                      label='Unregularised half-map 1 (optional)',
                      help='Half-map of the same refinement without the prior (e.g. RELION\'s '
                           'B/K map of the last iteration). Without a ground truth, the '
                           'regularised half-map resolution is checked against theirs. Not '
                           'needed for a RELION or redprior auto-refine: their half-maps '
                           '(_unfil) are already reconstructed without any prior.')
        form.addParam('unregHalf2', params.PathParam, default='',
                      label='Unregularised half-map 2 (optional)')

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.computeFscStep, self._mapsSignature(), needsGPU=False)
        if self._hasParticles():
            self._insertFunctionStep(self.computePosesStep,
                                     self.trueParticles.get().getObjId(),
                                     self.refinedParticles.get().getObjId(),
                                     self.symmetry.get(), self.alignFrames.get(),
                                     needsGPU=False)
        self._insertFunctionStep(self.reportStep, needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def computeFscStep(self, signature):
        from redprior.core.io import mrc as mrcio
        from redprior.core.validation import report
        from redprior.core.validation import metrics as validation
        vol = self.inputVolume.get()
        pixel = vol.getSamplingRate()
        h1p, h2p = self._halfMapPaths()
        self.info('Half-maps: %s, %s (%g A/px)' % (h1p, h2p, pixel))
        h1, h2 = self._readMap(h1p), self._readMap(h2p)
        gt = mask = u1 = u2 = None
        if self.groundTruth.get() is not None:
            gt = self._readMap(self._volumePath(self.groundTruth.get()))
            self.info('Ground truth: %s' % self._volumePath(self.groundTruth.get()))
        if self.inputMask.get() is not None:
            mask = self._readMap(self._volumePath(self.inputMask.get()))
            self.info('Mask: %s' % self._volumePath(self.inputMask.get()))
        if self._hasUnreg():
            u1, u2 = self._readMap(self.unregHalf1.get()), self._readMap(self.unregHalf2.get())
            self.info('Unregularised half-maps: %s, %s'
                      % (self.unregHalf1.get(), self.unregHalf2.get()))
        source = None
        if mask is None:
            mask, source = validation.default_mask(h1, h2, pixel, gt)
            mrcio.write_map(self._getExtraPath(AUTO_MASK), mask, pixel)
            self.info('Automatic mask written to %s' % self._getExtraPath(AUTO_MASK))
        rfrom = self.randomiseFrom.get()
        res = validation.validate_maps(h1, h2, pixel, mask=mask, ground_truth=gt,
                                       unreg_half1=u1, unreg_half2=u2, mask_source=source,
                                       randomise_from_A=rfrom if rfrom and rfrom > 0 else None)
        self.info('Mask: %s, mean value %.3f' % (res['mask']['source'], res['mask']['fraction']))
        if res['randomise_from_A']:
            self.info('Phases randomised from %.2f A (shell %d)'
                      % (res['randomise_from_A'], res['randomise_shell']))
        for note in res['notes']:
            self.warning(note)
        for row in report.resolution_rows(res):
            self.info('%-55s 0.143: %-45s 0.5: %s' % row)
        self.info('Overestimation: %s' % res['overestimation']['verdict'])
        write_json(self._getExtraPath(MAPS_JSON), res)

    def computePosesStep(self, trueId, refinedId, symmetry, align):
        from redprior.core.validation.poses import pose_errors
        ids_t, R_t, s_t = posesFromSet(self.trueParticles.get())
        ids_r, R_r, s_r = posesFromSet(self.refinedParticles.get())
        common, it, ir = np.intersect1d(ids_t, ids_r, return_indices=True)
        self.info('Particles: %d with true poses, %d refined, %d in common (matched by id)'
                  % (len(ids_t), len(ids_r), len(common)))
        if len(common) == 0:
            raise ValueError('The true and refined particle sets have no particle id in '
                             'common. Give the refinement\'s output particles and the set it '
                             'was refined from (or its source, e.g. "simulate particles").')
        poses = pose_errors(R_t[it], R_r[ir], symmetry, s_t[it], s_r[ir], align=align,
                            check_hand=True, ids=common)
        a, s = poses['angular'], poses['shift']
        self.info('Angular error (deg, %s): median %.3g, 75th %.3g, 90th %.3g, 95th %.3g'
                  % (symmetry, a['p50'], a['p75'], a['p90'], a['p95']))
        self.info('Shift error (Å): median %.3g, 90th %.3g; %s'
                  % (s['p50'], s['p90'], poses['shift_bias']['text']))
        if poses.get('hand') == 'mirror':
            self.warning('The refined poses fit the MIRROR image of the truth better: the map '
                         'probably has the wrong hand.')
        write_json(self._getExtraPath(POSES_JSON), poses)

    def reportStep(self):
        from redprior.core.validation import report
        res = read_json(self._getExtraPath(MAPS_JSON))
        if os.path.exists(self._getExtraPath(POSES_JSON)):
            res['poses'] = read_json(self._getExtraPath(POSES_JSON))
        write_json(self._getExtraPath(RESULTS_JSON), res)
        paths = report.write_report(res, self._getExtraPath(), info=self._reportInfo())
        for name, path in sorted(paths.items()):
            self.info('Report %s: %s' % (name, path))

    def createOutputStep(self):
        res = self.getResults()
        freq = [float(f) for f in res['frequencies']]
        fscs = self._createSetOfFSCs()
        for key, c in res['curves'].items():
            fsc = RedPriorFSC(objLabel=c['label'])
            fsc.setData(freq, [float(v) for v in c['fsc']])
            fscs.append(fsc)
        self._defineOutputs(outputFSCs=fscs)
        self._defineSourceRelation(self.inputVolume, fscs)

    # ------------------------------------------------------------------ helpers
    def getResults(self):
        """Contents of extra/validation.json ({} before the report step)."""
        from redprior.core.io.jsonfile import read_json
        return read_json(self._getExtraPath(RESULTS_JSON))

    def getReportPath(self, name='report.html'):
        return self._getExtraPath(name)

    def _hasParticles(self):
        return self.trueParticles.get() is not None and self.refinedParticles.get() is not None

    def _hasUnreg(self):
        return bool(self.unregHalf1.get()) and bool(self.unregHalf2.get())

    def _mapsSignature(self):
        # FunctionStep args are compared on "continue": pass names and numbers only
        parts = [self.inputVolume.get().getObjId()]
        for ptr in (self.groundTruth, self.inputMask):
            parts.append(ptr.get().getObjId() if ptr.get() is not None else None)
        return parts + [self.unregHalf1.get(), self.unregHalf2.get(), self.randomiseFrom.get()]

    @staticmethod
    def _volumePath(vol):
        return volumePath(vol)

    def _halfMapPaths(self):
        h1, h2 = halfMapPaths(self.inputVolume.get())
        return h1, h2

    def _readMap(self, path):
        return readCube(path, self._getTmpPath())[0]

    def _reportInfo(self):
        vol = self.inputVolume.get()
        info = {'refined map': '%s (%s)' % (vol.getObjLabel() or self._volumePath(vol),
                                            ', '.join(os.path.basename(h)
                                                      for h in self._halfMapPaths())),
                'symmetry': self.symmetry.get()}
        if self.groundTruth.get() is not None:
            info['ground truth'] = self._volumePath(self.groundTruth.get())
        if self.inputMask.get() is not None:
            info['mask'] = self._volumePath(self.inputMask.get())
        if self._hasParticles():
            info['particles'] = '%d true, %d refined' % (self.trueParticles.get().getSize(),
                                                         self.refinedParticles.get().getSize())
        if self._hasUnreg():
            info['unregularised half-maps'] = '%s, %s' % (self.unregHalf1.get(),
                                                          self.unregHalf2.get())
        return info

    # ------------------------------------------------------------------ info
    @classmethod
    def validateInstallation(cls):
        # Pure Python: do not inherit the plugin's RELION/TensorFlow check.
        return Plugin.missingPythonPackages('mrcfile')

    def _validate(self):
        from redprior.core.geometry import rotations as angles
        errors = []
        vol = self.inputVolume.get()
        if vol is None:
            return ['A refined map is required.']
        if not vol.hasHalfMaps() or len(vol.getHalfMaps(asList=True)) != 2:
            return ['The input map has no half-maps, so its resolution cannot be validated. '
                    'Use the map output by a 3D auto-refine (it carries its two half-maps), or '
                    'import the map with "import volumes", "Set half maps" = Yes and the two '
                    'half-map files.']
        pixel = vol.getSamplingRate()
        if not pixel or pixel <= 0:
            errors.append('The refined map has no pixel size; set it on import.')
        maps = [('half-map 1', self._halfMapPaths()[0], pixel),
                ('half-map 2', self._halfMapPaths()[1], pixel)]
        if self.groundTruth.get() is not None:
            gt = self.groundTruth.get()
            maps.append(('ground truth', self._volumePath(gt), gt.getSamplingRate()))
        if self.inputMask.get() is not None:
            m = self.inputMask.get()
            maps.append(('mask', self._volumePath(m), m.getSamplingRate()))
        if bool(self.unregHalf1.get()) != bool(self.unregHalf2.get()):
            errors.append('Give both unregularised half-maps or none.')
        elif self._hasUnreg():
            maps += [('unregularised half-map 1', self.unregHalf1.get(), None),
                     ('unregularised half-map 2', self.unregHalf2.get(), None)]
        errors += mapsProblems(maps, pixel)
        try:
            angles.symmetry_order(self.symmetry.get())
        except ValueError as exc:
            errors.append(str(exc))
        errors += self._validateParticles()
        return errors

    def _validateParticles(self):
        t, r = self.trueParticles.get(), self.refinedParticles.get()
        if (t is None) != (r is None):
            return ['Give both the particles with true poses and the refined particles (or '
                    'neither) to get angular errors.']
        errors = []
        for name, parts in (('particles with true poses', t), ('refined particles', r)):
            if parts is not None and parts.getSize() == 0:
                errors.append('The %s are an empty set: give a set with particles, or '
                              'neither set.' % name)
            elif parts is not None and parts.getAlignment() != ALIGN_PROJ:
                errors.append('The %s have no 3D projection alignment (alignment: %s). Use a '
                              'set with 3D poses, e.g. the output of "simulate particles" or of '
                              'a 3D refinement.' % (name, parts.getAlignment()))
        return errors

    def _summary(self):
        res = self.getResults()
        if not res:
            return ['Not run yet: will validate %s.' % (self.inputVolume.get() or 'the map')]
        from redprior.core.validation import report
        lines = report.summary_lines(res)
        lines.append('Resolution (FSC 0.143 / 0.5):')
        lines += ['  %s: %s / %s' % row for row in report.resolution_rows(res)]
        if res.get('poses'):
            lines += report.pose_notes(res['poses'])
        lines.append('Report: %s' % self.getReportPath())
        return lines

    def _methods(self):
        res = self.getResults()
        if not res:
            return []
        text = ('Half-map FSCs were computed unmasked and with %s soft mask; the masked FSC '
                'was corrected for the mask by phase randomisation%s (Chen et al. 2013, as in '
                'relion_postprocess). Resolutions are read where the FSC first drops below '
                '0.143 and 0.5.' % ('a given' if res['mask']['source'] == 'given'
                                    else 'an automatic', ' beyond %.1f A'
                                    % res['randomise_from_A'] if res.get('randomise_from_A')
                                    else ''))
        if 'gt_masked' in res['curves']:
            text += (' The average of the half-maps was compared with the ground truth by a '
                     'masked FSC (Kimanius et al. 2021).')
        if res.get('poses'):
            text += (' Angular errors are the axis-angle distances between true and refined '
                     'rotations, minimised over the %s symmetry group.' % res['poses']['symmetry'])
        return [text]

    def _citations(self):
        return ['Kimanius2021']
