"""'compare engines': consensus of two or more refinements (maps and particle poses).

The numerics live in redprior.core (align3d: map superposition and hand; consensus: pose
agreement, majority rule, cross-FSC, report); this protocol reads the Scipion inputs, runs
them and builds the outputs.

Scipion ALIGN_PROJ matrices M relate to RELION's pose matrix R and origin o (pixels) by
inv(M) = [[R, -o], [0, 1]] (what relion.convert's matrixFromGeometry writes), so poses are
read without going through Euler angles.
"""
import json
import os

import numpy as np

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pyworkflow.protocol import Protocol
from pwem.objects import FSC, SetOfFSCs, SetOfParticles
from pwem.protocols import EMProtocol

from redprior import Plugin
FRAME_FROM_MAPS, FRAME_FROM_POSES = 0, 1
FRAME_CHOICES = ['maps', 'particle poses']
MASK_NONE, MASK_SPHERE, MASK_AUTO = 0, 1, 2
MASK_CHOICES = ['none', 'soft sphere', 'automatic (from the reference map)']
TRANSFORMS_JSON = 'transforms.json'


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
    _possibleOutputs = {'outputAgreeing': SetOfParticles,
                        'outputDisagreeing': SetOfParticles,
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
                      label='Shift tolerance (A)',
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
        self._insertFunctionStep(self.convertInputStep, self._inputIds(), needsGPU=False)
        self._insertFunctionStep(self.alignFramesStep, self.alignFrames.get(),
                                 self.alignFrom.get(), self.checkHand.get(),
                                 self.symmetry.get(), needsGPU=False)
        self._insertFunctionStep(self.consensusStep, self.angleTolerance.get(),
                                 self.shiftTolerance.get(), self.minAgree.get(),
                                 self.fscMask.get(), needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _inputIds(self):
        return [[p.getUniqueId() for p in self.inputVolumes],
                [p.getUniqueId() for p in self.inputParticles]]

    def convertInputStep(self, inputIds):
        from redprior.core.io import mrc as mrcio
        names = self._names()
        for k, vol in enumerate(self._volumes()):
            data, _ = mrcio.read_map(self._mrcPath(vol))
            mrcio.check_cube(data, vol.getFileName())
            mrcio.write_map(self._mapPath(k), data, vol.getSamplingRate())
            self.info(f'Map {k + 1} ({names[k]}): box {data.shape[0]} px, '
                      f'{vol.getSamplingRate():g} A/px')
        for k, parts in enumerate(self._particleSets()):
            poses = self.readPoses(parts, names[k])
            poses.save(self._posesPath(k))
            self.info(f'Particles {k + 1} ({poses.name}): {len(poses)} with 3D alignment')

    def alignFramesStep(self, alignFrames, alignFrom, checkHand, symmetry):
        from redprior.core.geometry import align3d
        from redprior.core.validation import consensus
        from redprior.core.io import mrc as mrcio
        n = self._numberOfInputs()
        pixel = self._pixelSize()
        identity = align3d.FrameTransform(pixel_size=pixel, method='identity')
        transforms = [identity.to_dict()]
        for k in range(1, n):
            if not alignFrames:
                t = identity
            elif alignFrom == FRAME_FROM_MAPS:
                a = mrcio.read_map(self._mapPath(0))[0]
                b = mrcio.read_map(self._mapPath(k))[0]
                self.info(f'Aligning map {k + 1} onto map 1 ...')
                t = align3d.align_volumes(a, b, pixel, check_hand=checkHand, log=self.info)
            else:
                ref, other = self._loadPoses(0), self._loadPoses(k)
                t = consensus.align_pose_sets(ref, other, symmetry,
                                              self.angleTolerance.get(), checkHand)
                t.pixel_size = pixel
            d = t.to_dict()
            self.info(f'Frame of input {k + 1}: {d["method"]}, rotation '
                      f'{d["rotation_angle_deg"]:.2f} deg, shift '
                      f'({", ".join("%.2f" % x for x in d["shift_A"])}) A, hand {d["hand"]}, '
                      f'score {d["score"]:.3f}'
                      + ('' if d['score_other_hand'] is None
                         else f' (other hand {d["score_other_hand"]:.3f})'))
            transforms.append(d)
        with open(self._getExtraPath(TRANSFORMS_JSON), 'w') as fh:
            json.dump(transforms, fh, indent=1)

    def consensusStep(self, angleTol, shiftTol, minAgree, fscMask):
        from redprior.core.geometry import align3d
        from redprior.core.validation import consensus
        from redprior.core.geometry import masks
        from redprior.core.io import mrc as mrcio
        transforms = [align3d.FrameTransform.from_dict(d) for d in self.getTransforms()]
        names = self._names()
        result = None
        if self._particleSets():
            sets = [self._loadPoses(k).transformed(transforms[k])
                    for k in range(len(self._particleSets()))]
            result = consensus.consensus(sets, angleTol, shiftTol, self.symmetry.get(),
                                         minAgree or None)
            s = result.summary()
            self.info(f"{s['n_agree']} of {s['n_common']} common particles agree "
                      f"({100 * (s['fraction_agree'] or 0):.1f} %), {s['n_disagree']} do not")
        fscResult = None
        if self._volumes():
            pixel = self._pixelSize()
            maps = []
            for k, t in enumerate(transforms[:len(self._volumes())]):
                data = mrcio.read_map(self._mapPath(k))[0]
                aligned = data if t.method == 'identity' else t.apply_to_map(data)
                mrcio.write_map(self._alignedPath(k), aligned, pixel)
                maps.append(aligned)
            box = maps[0].shape[0]
            mask = None
            if fscMask == MASK_SPHERE:
                mask = masks.spherical_mask(box, 0.45 * box, soft_px=3)
            elif fscMask == MASK_AUTO:
                mask = masks.solvent_mask(maps[0], pixel, lowpass_A=max(15.0, 3 * pixel))
            if mask is not None:
                mrcio.write_map(self._getExtraPath('fsc_mask.mrc'), mask, pixel)
            fscResult = consensus.cross_fsc(maps, pixel, mask, names[:len(maps)])
        consensus.save_result(self._getExtraPath(), result, transforms, fscResult,
                              extra=dict(inputs=names, averaged_poses=self.averagePoses.get()))
        html = consensus.write_report(self._getExtraPath(),
                                      title='Consensus of %d refinements' % len(names))
        self.info(f'Report: {html}')

    def createOutputStep(self):
        from redprior.core.validation import consensus
        data, arrays = consensus.load_result(self._getExtraPath())
        outputs = {}
        if arrays is not None:
            first = self.inputParticles[0].get()
            ids = arrays['ids']
            agree = arrays['agree']
            mean = None
            if self.averagePoses.get():
                mean = {int(i): (R, o) for i, R, o in zip(ids, arrays['consensus_rotations'],
                                                         arrays['consensus_shifts_A'])}
            for name, keep, suffix in (('outputAgreeing', set(ids[agree].tolist()), 'agreeing'),
                                       ('outputDisagreeing', set(ids[~agree].tolist()),
                                        'disagreeing')):
                if not keep:
                    self.info(f'No {suffix} particles: {name} is not created.')
                    continue
                out = self._createSetOfParticles(suffix)
                out.copyInfo(first)
                px = first.getSamplingRate()

                def update(item, row, keep=keep, withMean=(mean is not None
                                                          and suffix == 'agreeing')):
                    item._appendItem = item.getObjId() in keep
                    if item._appendItem and withMean:
                        R, o = mean[item.getObjId()]
                        item.getTransform().setMatrix(self.scipionMatrix(R, o / px))

                out.copyItems(first, updateItemCallback=update)
                outputs[name] = out
        if data.get('fsc'):
            fscs = self._createSetOfFSCs()
            f = data['fsc']
            for c in f['curves']:
                i, j = c['pair']
                fsc = FSC(objLabel='%s vs %s' % (f['names'][i], f['names'][j]))
                fsc.setData(f['freq'][1:], c['fsc'][1:])
                fscs.append(fsc)
            outputs['outputFSCs'] = fscs
        self._defineOutputs(**outputs)
        for out in outputs.values():
            for p in list(self.inputParticles) + list(self.inputVolumes):
                self._defineSourceRelation(p, out)

    # ------------------------------------------------------------------ conversions
    @staticmethod
    def relionPose(matrix):
        """(RELION pose matrix R, origin in pixels (x, y)) of a Scipion ALIGN_PROJ matrix."""
        inv = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
        return inv[:3, :3], -inv[:2, 3]

    @staticmethod
    def scipionMatrix(R, origin_px):
        """Inverse of relionPose: the 4x4 Scipion ALIGN_PROJ matrix."""
        T = np.eye(4)
        T[:3, :3] = R
        T[:2, 3] = -np.asarray(origin_px, dtype=np.float64)
        return np.linalg.inv(T)

    @classmethod
    def readPoses(cls, parts, name=''):
        """core.validation.consensus.PoseSet (ids, RELION matrices, origins in A) of a SetOfParticles."""
        from redprior.core.validation.consensus import PoseSet
        px = parts.getSamplingRate()
        ids, Rs, shifts = [], [], []
        for p in parts.iterItems(orderBy='id'):
            R, o = cls.relionPose(p.getTransform().getMatrix())
            ids.append(p.getObjId())
            Rs.append(R)
            shifts.append(o * px)
        return PoseSet(np.array(ids), np.array(Rs).reshape(-1, 3, 3),
                       np.array(shifts).reshape(-1, 2), name)

    # ------------------------------------------------------------------ helpers
    def _volumes(self):
        return [p.get() for p in self.inputVolumes if p.get() is not None]

    def _particleSets(self):
        return [p.get() for p in self.inputParticles if p.get() is not None]

    def _numberOfInputs(self):
        return max(len(self._volumes()), len(self._particleSets()))

    def _pixelSize(self):
        objs = self._volumes() or self._particleSets()
        return float(objs[0].getSamplingRate())

    def _names(self):
        """One short label per refinement: '<k>: <label of the producing protocol>'."""
        names = []
        vols, parts = list(self.inputVolumes), list(self.inputParticles)
        for k in range(self._numberOfInputs()):
            ptr = parts[k] if k < len(parts) else vols[k]
            obj = ptr.get()
            value = ptr.getObjValue()
            # GUI pointers hold (protocol, 'outputX'); direct ones the object itself
            label = value.getObjLabel() if isinstance(value, Protocol) else obj.getObjLabel()
            if not label:
                try:
                    label = self.getProject().getProtocol(obj.getObjParentId()).getObjLabel()
                except Exception:  # no project (e.g. a protocol built outside one)
                    label = '%s %s' % (obj.getClassName(), obj.getObjId())
            names.append('%d: %s' % (k + 1, label))
        return names

    def _mrcPath(self, vol):
        fn = vol.getFileName()
        fn = fn[:-4] if fn.endswith(':mrc') else fn
        if os.path.splitext(fn)[1].lower() in ('.mrc', '.map', '.mrcs'):
            return fn
        # e.g. Spider/Xmipp .vol from other plugins: the core reads MRC only
        from pwem.emlib.image import ImageHandler
        out = self._getTmpPath(os.path.basename(fn) + '.mrc')
        ImageHandler().convert(fn, out)
        return out

    def _mapPath(self, k):
        return self._getExtraPath('map_%02d.mrc' % (k + 1))

    def _alignedPath(self, k):
        return self._getExtraPath('aligned_%02d.mrc' % (k + 1))

    def _posesPath(self, k):
        return self._getExtraPath('poses_%02d.npz' % (k + 1))

    def _loadPoses(self, k):
        from redprior.core.validation.consensus import PoseSet
        return PoseSet.load(self._posesPath(k))

    def getTransforms(self):
        """Frame transforms (dicts, align3d.FrameTransform.to_dict) of every input."""
        path = self._getExtraPath(TRANSFORMS_JSON)
        if not os.path.exists(path):
            return []
        with open(path) as fh:
            return json.load(fh)

    def getResult(self):
        """Contents of extra/consensus.json ({} before the run wrote it)."""
        path = self._getExtraPath('consensus.json')
        if not os.path.exists(path):
            return {}
        with open(path) as fh:
            return json.load(fh)

    def getReportPath(self):
        return self._getExtraPath('consensus.html')

    # ------------------------------------------------------------------ info
    @classmethod
    def validateInstallation(cls):
        # Pure Python: RELION and TensorFlow (the plugin's own check) are not needed.
        return Plugin.missingPythonPackages('mrcfile', 'scipy')

    def _validate(self):
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
        if vols:
            box0, px0 = vols[0].getXDim(), vols[0].getSamplingRate()
            for k, v in enumerate(vols[1:], start=2):
                if v.getXDim() != box0 or abs(v.getSamplingRate() - px0) > 0.01 * px0:
                    errors.append('Map %d is %d px at %.3f A/px but map 1 is %d px at %.3f '
                                  'A/px: resample it to the first map (e.g. relion_image_'
                                  'handler --rescale_angpix %.3f --new_box %d, or xmipp '
                                  'crop/resize volumes).'
                                  % (k, v.getXDim(), v.getSamplingRate(), box0, px0, px0,
                                     box0))
        if vols and parts and nv == np_:
            for k, (v, p) in enumerate(zip(vols, parts), start=1):
                ppx, vpx = p.getSamplingRate(), v.getSamplingRate()
                if ppx and vpx and abs(ppx - vpx) > 0.01 * vpx:
                    errors.append('Particle set %d is at %.3f A/px but its map is at %.3f '
                                  'A/px: give the map of that refinement (or rescale one of '
                                  'them).' % (k, ppx, vpx))
        if self.alignFrames.get():
            if self.alignFrom.get() == FRAME_FROM_MAPS and nv < 2:
                errors.append('Aligning the frames from the maps needs a map per refinement; '
                              'add the maps, or align from the particle poses.')
            if self.alignFrom.get() == FRAME_FROM_POSES and np_ < 2:
                errors.append('Aligning the frames from the poses needs the particle sets; '
                              'add them, or align from the maps.')
        try:
            from redprior.core.geometry import rotations as angles
            angles.symmetry_operators(self.symmetry.get())
        except ValueError as exc:
            errors.append(str(exc))
        if self.shiftTolerance.get() is None or self.shiftTolerance.get() < 0:
            errors.append('Shift tolerance must be >= 0 A (0 ignores shifts).')
        n = max(nv, np_)
        if self.minAgree.get() and not 2 <= self.minAgree.get() <= n:
            errors.append('Engines that must agree must be 0 (majority) or between 2 and the '
                          'number of refinements (%d).' % n)
        return errors

    def _summary(self):
        data = self.getResult()
        if not data:
            return ['Compares %d refinements (not run yet).' % self._numberOfInputs()]
        lines = []
        s = data.get('summary')
        if s:
            lines.append('Agreeing particles: %d of %d common (%.1f %%); disagreeing: %d '
                         '(rule: %d of %d engines within %g deg and %g A, symmetry %s)'
                         % (s['n_agree'], s['n_common'], 100 * (s['fraction_agree'] or 0),
                            s['n_disagree'], s['min_agree'], len(s['engines']),
                            s['angle_tol_deg'], s['shift_tol_A'], s['symmetry']))
            for p in s['pairs']:
                a, sh = p['angle'], p['shift']
                if a['n']:
                    lines.append('%s vs %s: angle median %.2f deg (p75 %.2f, p90 %.2f, p95 '
                                 '%.2f), shift median %.2f A (p90 %.2f), agree %.1f %%'
                                 % (p['names'][0], p['names'][1], a['p50'], a['p75'],
                                    a['p90'], a['p95'], sh['p50'], sh['p90'],
                                    100 * p['fraction_agree']))
            missing = {k: v for k, v in s['not_common'].items() if v}
            if missing:
                lines.append('Not in every set (not judged): %s'
                             % ', '.join('%s %d' % kv for kv in missing.items()))
        for k, t in enumerate(data.get('transforms') or []):
            if t and t['method'] != 'identity':
                lines.append('Frame of input %d (from %s): rotation %.1f deg, shift %.1f A, '
                             'hand %s, score %.3f' % (k + 1, t['method'],
                                                      t['rotation_angle_deg'],
                                                      float(np.linalg.norm(t['shift_A'])),
                                                      t['hand'], t['score']))
        f = data.get('fsc')
        if f:
            for c in f['curves']:
                i, j = c['pair']
                r = f['res05'][i][j]
                lines.append('Cross-FSC %s vs %s: %s at 0.5'
                             % (f['names'][i], f['names'][j],
                                ('%.2f A' % r) + ('' if f['crossed05'][i][j]
                                                  else ' (Nyquist, never below 0.5)')))
        return lines

    def _methods(self):
        data = self.getResult()
        s = data.get('summary') if data else None
        if not s:
            return []
        return ['The poses of %d refinements were compared per particle after bringing them '
                'into one frame; a particle was kept when at least %d engines agreed within '
                '%g degrees (symmetry %s) and %g A, following the consensus rule of Sorzano '
                'et al. (two disagreeing estimates discard the particle). %d of %d particles '
                '(%.1f %%) agreed.' % (len(s['engines']), s['min_agree'], s['angle_tol_deg'],
                                       s['symmetry'], s['shift_tol_A'], s['n_agree'],
                                       s['n_common'], 100 * (s['fraction_agree'] or 0))]

    def _citations(self):
        return ['Kimanius2021']
