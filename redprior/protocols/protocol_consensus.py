"""'compare engines': consensus of two or more refinements (maps and particle poses).

The Scipion layer only: numerics, files and report are core.validation.consensus*, the
Scipion conversions redprior.convert.
"""
import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pyworkflow.protocol import Protocol
from pwem.objects import SetOfFSCs, SetOfParticles
from pwem.protocols import EMProtocol

from redprior.objects import RedPriorFSC
from redprior import Plugin, convert
from redprior.core.validation import consensus, consensus_report, consensus_results as results
from redprior.core.validation.consensus import PoseSet

FRAME_FROM_MAPS, FRAME_FROM_POSES = 0, 1
FRAME_CHOICES = ['maps', 'particle poses']
MASK_NONE, MASK_SPHERE, MASK_AUTO = 0, 1, 2
MASK_CHOICES = ['none', 'soft sphere', 'automatic (from the reference map)']
# subsets of core.validation.consensus_results.particle_subsets -> output name
SUBSET_OUTPUTS = {'agreeing': 'outputAgreeing', 'disagreeing': 'outputDisagreeing'}


class ProtRedPriorConsensus(EMProtocol):
    """Compare refinements of the same particles by different engines (RELION, CW-RED, any
    3D refinement Scipion holds, or imported ones).

    Each refinement is brought into the frame of the first one (rotation, shift and hand
    from the maps, or from the poses), then every particle's poses are compared (angles
    modulo the symmetry, origins in A). A particle is kept when a majority of the engines
    agree within the tolerances; with two engines both must agree (a two-way disagreement
    discards the particle). Outputs the agreeing and the disagreeing particles (items of the
    first set), the cross-FSC of every pair of maps and an HTML report.
    """
    _label = 'compare engines'
    _devStatus = BETA
    _possibleOutputs = {SUBSET_OUTPUTS['agreeing']: SetOfParticles,
                        SUBSET_OUTPUTS['disagreeing']: SetOfParticles,
                        'outputFSCs': SetOfFSCs}

    # ------------------------------------------------------------------ form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputVolumes', params.MultiPointerParam, pointerClass='Volume',
                      allowsNull=True, minNumObjects=0, important=True,
                      label='Maps (one per refinement)',
                      help='The final map of each refinement, in the same order as the '
                           'particle sets. The first one is the reference frame. Leave empty '
                           'to compare poses only.')
        form.addParam('inputParticles', params.MultiPointerParam,
                      pointerClass='SetOfParticles', allowsNull=True, minNumObjects=0,
                      important=True, label='Refined particles (one set per refinement)',
                      help='Particles with 3D projection alignment from each refinement. '
                           'Particles are matched by id; only the ones present in every set '
                           'are judged. The outputs are items of the first set.')
        form.addParam('symmetry', params.StringParam, default='C1', label='Symmetry',
                      help='Point group used by the refinements (RELION notation: Cn, Dn, T, '
                           'O, I). Poses related by a symmetry operator count as equal.')
        form.addParam('angleTolerance', params.FloatParam, default=10.0,
                      validators=[params.Positive], label='Angle tolerance (deg)',
                      help='Two engines agree on a particle when the rotation between their '
                           'poses (closest symmetry copy) is at most this.')
        form.addParam('shiftTolerance', params.FloatParam, default=3.0,
                      label='Shift tolerance (Å)',
                      help='... and their origins differ by at most this (in the image '
                           'plane, after the frame alignment). 0 ignores shifts.')
        form.addParam('minAgree', params.IntParam, default=0,
                      expertLevel=params.LEVEL_ADVANCED,
                      label='Engines that must agree (0 = majority)',
                      help='0: a strict majority (N // 2 + 1): both of 2, 2 of 3, 3 of 4. '
                           'Set it to the number of engines for unanimity.')

        form.addSection(label='Frames and maps')
        form.addParam('alignFrames', params.BooleanParam, default=True,
                      label='Align the frames?',
                      help='Refinements started from different references end up in '
                           'different (rotated, shifted, maybe mirrored) frames. Yes: bring '
                           'each one into the first one\'s frame before comparing. No: the '
                           'inputs already share a frame (e.g. same initial model).')
        form.addParam('alignFrom', params.EnumParam, choices=FRAME_CHOICES,
                      default=FRAME_FROM_MAPS, condition='alignFrames',
                      display=params.EnumParam.DISPLAY_HLIST, label='Align from',
                      help='maps: global rotation/translation search of each map onto the '
                           'first (both hands). particle poses: the global rotation that '
                           'best maps one set of poses onto the other (needs particle sets).')
        form.addParam('checkHand', params.BooleanParam, default=True, condition='alignFrames',
                      label='Test the other hand?',
                      help='Also try the mirror image and keep the better fit; the summary '
                           'says which hand each refinement has.')
        form.addParam('fscMask', params.EnumParam, choices=MASK_CHOICES, default=MASK_AUTO,
                      label='Mask for the cross-FSC',
                      help='Applied to every aligned map before the FSC. Automatic: the '
                           'reference map low-passed to 15 A, thresholded, dilated and '
                           'softened.')
        form.addParam('averagePoses', params.BooleanParam, default=False,
                      expertLevel=params.LEVEL_ADVANCED,
                      label='Agreeing particles with the mean pose?',
                      help='No: the agreeing particles keep the first set\'s poses. Yes: '
                           'they get the mean of the agreeing engines\' poses (in the first '
                           'set\'s frame), as the review recommends for close estimates.')

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        inputIds = [[p.getUniqueId() for p in self.inputVolumes],
                    [p.getUniqueId() for p in self.inputParticles]]
        self._insertFunctionStep(self.convertInputStep, inputIds, needsGPU=False)
        self._insertFunctionStep(self.alignFramesStep, self.alignFrames.get(),
                                 self.alignFrom.get(), self.checkHand.get(),
                                 self.symmetry.get(), needsGPU=False)
        self._insertFunctionStep(self.consensusStep, self.angleTolerance.get(),
                                 self.shiftTolerance.get(), self.minAgree.get(),
                                 self.fscMask.get(), needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def convertInputStep(self, inputIds):
        from redprior.core.io import mrc as mrcio
        names = self._names()
        vols, sets = self._volumes(), self._particleSets()
        for k, (vol, path) in enumerate(zip(vols, self._paths('map', len(vols)))):
            data, _ = mrcio.read_map(convert.mrcPath(vol.getFileName(), self._getTmpPath()))
            mrcio.check_cube(data, vol.getFileName())
            mrcio.write_map(path, data, vol.getSamplingRate())
            self.info(f'Map {k + 1} ({names[k]}): box {data.shape[0]} px, '
                      f'{vol.getSamplingRate():g} A/px')
        for k, (parts, path) in enumerate(zip(sets, self._paths('poses', len(sets)))):
            poses = PoseSet(*convert.posesFromSet(parts), names[k])
            poses.save(path)
            self.info(f'Particles {k + 1} ({poses.name}): {len(poses)} with 3D alignment')

    def alignFramesStep(self, alignFrames, alignFrom, checkHand, symmetry):
        from redprior.core.validation import consensus_frames as frames
        n = self._numberOfInputs()
        method = (frames.FROM_MAPS, frames.FROM_POSES)[alignFrom] if alignFrames else None
        transforms = frames.align_frames(n, self._pixelSize(), method, self._paths('map', n),
                                         self._paths('poses', n), symmetry,
                                         self.angleTolerance.get(), checkHand, log=self.info)
        results.save_transforms(self._getExtraPath(), transforms)

    def consensusStep(self, angleTol, shiftTol, minAgree, fscMask):
        from redprior.core.geometry.align3d import FrameTransform
        from redprior.core.validation import consensus_maps
        transforms = [FrameTransform.from_dict(d) for d in self.getTransforms()]
        names, ns, nv = self._names(), len(self._particleSets()), len(self._volumes())
        result = fscResult = None
        if ns:
            sets = [PoseSet.load(path).transformed(t)
                    for path, t in zip(self._paths('poses', ns), transforms)]
            result = consensus.consensus(sets, angleTol, shiftTol, self.symmetry.get(),
                                         minAgree or None)
            self.info(consensus_report.agreement_line(result.summary()))
        if nv:
            fscResult = consensus_maps.compare_maps(
                self._paths('map', nv), transforms, self._pixelSize(),
                consensus_maps.MASKS[fscMask], names, self._paths('aligned', nv),
                self._getExtraPath(results.FSC_MASK))
        results.save_result(self._getExtraPath(), result, transforms, fscResult,
                            extra=dict(inputs=names, averaged_poses=self.averagePoses.get()))
        self.info('Report: %s' % consensus_report.write_report(
            self._getExtraPath(), title='Consensus of %d refinements' % len(names)))

    def createOutputStep(self):
        data, arrays = results.load_result(self._getExtraPath())
        outputs = {}
        subsets = [] if arrays is None else results.particle_subsets(arrays,
                                                                     self.averagePoses.get())
        first = self.inputParticles[0].get() if subsets else None
        for suffix, keep, poses in subsets:
            name = SUBSET_OUTPUTS[suffix]
            if not keep:
                self.info(f'No {suffix} particles: {name} is not created.')
                continue
            out = self._createSetOfParticles(suffix)
            out.copyInfo(first)
            px = first.getSamplingRate()

            def update(item, row, keep=keep, poses=poses):
                item._appendItem = item.getObjId() in keep
                if item._appendItem and poses is not None:
                    R, o = poses[item.getObjId()]
                    item.getTransform().setMatrix(convert.scipionMatrix(R, o / px))

            out.copyItems(first, updateItemCallback=update)
            outputs[name] = out
        curves = results.fsc_curves(data)
        if curves:
            fscs = self._createSetOfFSCs()
            for label, freq, values in curves:
                fsc = RedPriorFSC(objLabel=label)
                fsc.setData(freq, values)
                fscs.append(fsc)
            outputs['outputFSCs'] = fscs
        self._defineOutputs(**outputs)
        for out in outputs.values():
            for p in list(self.inputParticles) + list(self.inputVolumes):
                self._defineSourceRelation(p, out)

    # ------------------------------------------------------------------ helpers
    def _volumes(self):
        return [p.get() for p in self.inputVolumes if p.get() is not None]

    def _particleSets(self):
        return [p.get() for p in self.inputParticles if p.get() is not None]

    def _numberOfInputs(self):
        return max(len(self._volumes()), len(self._particleSets()))

    def _pixelSize(self):
        return float((self._volumes() or self._particleSets())[0].getSamplingRate())

    def _names(self):
        """One short label per refinement: '<k>: <label of the producing protocol>'."""
        names = []
        vols, parts = list(self.inputVolumes), list(self.inputParticles)
        for k in range(self._numberOfInputs()):
            ptr = parts[k] if k < len(parts) else vols[k]
            obj, value = ptr.get(), ptr.getObjValue()
            # GUI pointers hold (protocol, 'outputX'); direct ones the object itself
            label = value.getObjLabel() if isinstance(value, Protocol) else obj.getObjLabel()
            if not label:
                try:
                    label = self.getProject().getProtocol(obj.getObjParentId()).getObjLabel()
                except Exception:  # no project (e.g. a protocol built outside one)
                    label = '%s %s' % (obj.getClassName(), obj.getObjId())
            names.append('%d: %s' % (k + 1, label))
        return names

    def _paths(self, kind, n):
        """extra/ files of inputs 1..n: 'map', 'poses' or 'aligned' (consensus_results)."""
        return results.input_paths(self._getExtraPath(), kind, n)

    def getTransforms(self):
        """Frame transforms (dicts, align3d.FrameTransform.to_dict) of every input."""
        return results.load_transforms(self._getExtraPath())

    def getResults(self):
        """Contents of extra/consensus.json ({} before the run wrote it)."""
        return results.read_summary(self._getExtraPath())

    def getReportPath(self):
        return self._getExtraPath(consensus_report.REPORT_HTML)

    # ------------------------------------------------------------------ info
    @classmethod
    def validateInstallation(cls):
        # Pure Python: RELION and TensorFlow (the plugin's own check) are not needed.
        return Plugin.missingPythonPackages('mrcfile', 'scipy')

    def _validate(self):
        from redprior.core.geometry import rotations as angles
        from redprior.core.validation.consensus_maps import grid_errors
        errors = []
        vols, parts = self._volumes(), self._particleSets()
        nv, np_ = len(vols), len(parts)
        if max(nv, np_) < 2:
            return ['Give at least two refinements to compare: two or more particle sets '
                    '(with their maps), or two or more maps (got %d map(s) and %d particle '
                    'set(s)).' % (nv, np_)]
        if nv and np_ and nv != np_:
            errors.append('Give one map per particle set, in the same order (got %d maps and '
                          '%d particle sets), or leave the maps empty to compare the poses '
                          'only.' % (nv, np_))
        for k, p in enumerate(parts):
            if not p.hasAlignmentProj():
                errors.append('Particle set %d (%s) has no 3D projection alignment '
                              '(alignment: %s). Use the particles output of a 3D refinement, '
                              'or import the particles with their angles.'
                              % (k + 1, p.getObjLabel() or p.getNameId(), p.getAlignment()))
        errors += grid_errors([(v.getXDim(), v.getSamplingRate()) for v in vols],
                              [p.getSamplingRate() for p in parts] if nv == np_ else None)
        if self.alignFrames.get():
            if self.alignFrom.get() == FRAME_FROM_MAPS and nv < 2:
                errors.append('Aligning the frames from the maps needs a map per refinement; '
                              'add the maps, or align from the particle poses.')
            if self.alignFrom.get() == FRAME_FROM_POSES and np_ < 2:
                errors.append('Aligning the frames from the poses needs the particle sets; '
                              'add them, or align from the maps.')
        try:
            angles.symmetry_operators(self.symmetry.get())
        except ValueError as exc:
            errors.append(str(exc))
        if self.shiftTolerance.get() is None or self.shiftTolerance.get() < 0:
            errors.append('Shift tolerance must be >= 0 A (0 ignores shifts).')
        n = max(nv, np_)
        if self.minAgree.get() and not 2 <= self.minAgree.get() <= n:
            errors.append('Engines that must agree must be 0 (majority) or between 2 and the '
                          'number of refinements (%d).' % n)
        if np_ >= 2 and not set.intersection(*[set(p.getIdSet()) for p in parts]):
            errors.append('The particle sets share no particle id, so no particle can be '
                          'compared: give refinements of the same particles.')
        return errors

    def _summary(self):
        data = self.getResults()
        if not data:
            return ['Compares %d refinements (not run yet).' % self._numberOfInputs()]
        return consensus_report.summary_lines(data)

    def _methods(self):
        data = self.getResults()
        s = data.get('summary') if data else None
        return [consensus_report.methods_text(s)] if s else []

    def _citations(self):
        return ['Kimanius2021']
