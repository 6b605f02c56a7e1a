"""'compare engines' end to end with known answers (tiny: 100 particles, box 32).

Engine 1 is the simulation itself (ground truth map and true poses). Engine 2 "refined" a
rotated and shifted copy of the ground truth: its map is that copy and its poses are the
true ones carried into that frame, with known errors on a known subset. Engine 3 (for the
majority rule) is in engine 1's frame with errors on another subset.

Run with `python -m pytest redprior/tests/test_protocol_consensus.py -q`.
"""
import os
import unittest

import numpy as np
from scipy.spatial.transform import Rotation

import pwem
from pwem.objects import SetOfParticles
from pwem.protocols import ProtImportParticles, ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject
from pyworkflow.viewer import DESKTOP_TKINTER

from redprior import constants as C
from redprior import convert
from redprior.core.geometry import align3d
from redprior.core.geometry import rotations as angles
from redprior.core.io import mrc as mrcio
from redprior.core.validation.consensus import PoseSet
from redprior.tests.common import simulateDemoParticles
from redprior.protocols import ProtRedPriorConsensus
from redprior.protocols.protocol_consensus import FRAME_FROM_POSES

BOX, PIXEL, N_PART = 32, 4.0, 100
# engine 2's frame: p_1 = R p_2 + t (align3d convention), i.e. what the alignment must find
FRAME_R = Rotation.from_euler('zyz', [70, 40, -110], degrees=True).as_matrix()
FRAME_T = np.array([4.0, -2.0, 3.0])
# known errors (particle ids): wrong view (30 deg) or wrong origin (8 A)
E2_ANGLE, E2_SHIFT = [3, 10, 17, 40, 41, 77], [22, 23, 60]
E3_ANGLE, E3_SHIFT = [10, 40, 55, 90], [23, 61]


class TestRedPriorConsensus(BaseTest):

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        cls.data = os.path.abspath('consensusData')
        os.makedirs(cls.data, exist_ok=True)
        _, cls.sim = simulateDemoParticles(cls, BOX, PIXEL, N_PART, 0.1, label='engine 1 (truth)',
                                           doCtf=False, maxShift=2.0, seed=7)
        frame = align3d.FrameTransform(FRAME_R, FRAME_T, False, pixel_size=PIXEL)
        truth = mrcio.read_map(cls.sim.outputVolume.getFileName())[0]
        cls.vol2 = cls._importVolume('engine2.mrc', frame.inverse().apply_to_map(truth))
        cls.parts2 = cls._importPoses('engine 2', frame.inverse(), angles.axis_angle_matrix(
            (1.0, 0.0, 0.0), 30.0)[0], E2_ANGLE, [8.0, 0.0], E2_SHIFT)

    @classmethod
    def _importVolume(cls, name, data, pixel=PIXEL):
        mrcio.write_map(os.path.join(cls.data, name), data, pixel)
        prot = cls.newProtocol(ProtImportVolumes, objLabel='import %s' % name,
                               filesPath=os.path.join(cls.data, name), samplingRate=pixel)
        cls.launchProtocol(prot)
        return prot.outputVolume

    @classmethod
    def _importPoses(cls, label, frame, wrongView, angleIds, wrongShift, shiftIds):
        """Copy of the true particles with poses in another frame and known errors
        (a view error D: pose D R, which survives any change of map frame)."""
        sqlite = os.path.join(cls.data, label.replace(' ', '_') + '.sqlite')
        if os.path.exists(sqlite):
            os.remove(sqlite)
        out = SetOfParticles(filename=sqlite)
        src = cls.sim.outputParticles
        out.copyInfo(src)
        for part in src.iterItems(orderBy='id'):
            new = part.clone()
            R, o_px = convert.relionPose(part.getTransform().getMatrix())
            R, o_A = frame.apply_to_poses(R, o_px * PIXEL)
            R, o_A = R[0], o_A[0]
            if part.getObjId() in angleIds:
                R = wrongView @ R
            if part.getObjId() in shiftIds:
                o_A = o_A + wrongShift
            new.getTransform().setMatrix(convert.scipionMatrix(R, o_A / PIXEL))
            out.append(new)
        out.write()
        out.close()
        prot = cls.newProtocol(ProtImportParticles, objLabel='import %s' % label,
                               importFrom=ProtImportParticles.IMPORT_FROM_SCIPION,
                               sqliteFile=sqlite, samplingRate=PIXEL)
        cls.launchProtocol(prot)
        return prot.outputParticles

    def _consensus(self, label, volumes, particles, **kwargs):
        prot = self.newProtocol(ProtRedPriorConsensus, objLabel=label, **kwargs)
        for v in volumes:
            prot.inputVolumes.append(v)
        for p in particles:
            prot.inputParticles.append(p)
        return prot

    @staticmethod
    def _ids(parts):
        return sorted(p.getObjId() for p in parts.iterItems())

    # ------------------------------------------------------------------ tests
    def test_matrix_conversion(self):
        # Scipion ALIGN_PROJ matrix <-> RELION pose, against the simulation's STAR file
        from redprior.core.io import star_particles as particles_star
        star = particles_star.read_particles(
            self.sim._getExtraPath(C.SIM_PARTICLES_NAME + '.star'))
        poses = PoseSet(*convert.posesFromSet(self.sim.outputParticles))
        np.testing.assert_array_equal(poses.ids, np.arange(1, N_PART + 1))
        np.testing.assert_allclose(
            poses.rotations, angles.euler_to_matrix(star['rot'], star['tilt'], star['psi']),
            atol=1e-4)
        np.testing.assert_allclose(poses.shifts_A,
                                   np.stack([star['shift_x_A'], star['shift_y_A']], 1),
                                   atol=1e-3)
        M = convert.scipionMatrix(poses.rotations[5], poses.shifts_A[5] / PIXEL)
        R, o = convert.relionPose(M)
        np.testing.assert_allclose(R, poses.rotations[5], atol=1e-12)
        np.testing.assert_allclose(o * PIXEL, poses.shifts_A[5], atol=1e-9)

    def test_two_engines_aligned_from_maps(self):
        prot = self._consensus('two engines', [self.sim.outputVolume, self.vol2],
                               [self.sim.outputParticles, self.parts2])
        self.launchProtocol(prot)
        # the disagreeing particles are exactly the ones given errors
        self.assertEqual(self._ids(prot.outputDisagreeing), sorted(E2_ANGLE + E2_SHIFT))
        self.assertSetSize(prot.outputAgreeing, N_PART - len(E2_ANGLE) - len(E2_SHIFT))
        # recovered frame of engine 2
        t = prot.getTransforms()[1]
        self.assertEqual((t['method'], t['hand']), ('volumes', 'same'))
        R = np.array(t['rotation'])
        self.assertLess(angles.rotation_angle(R.T @ FRAME_R)[0], 2.0)
        np.testing.assert_allclose(t['shift_A'], FRAME_T, atol=1.0)
        self.assertGreater(t['score'], 0.95)
        # agreeing items are the first set's, with its poses
        first = {p.getObjId(): p.getTransform().getMatrix()
                 for p in self.sim.outputParticles.iterItems()}
        for p in prot.outputAgreeing.iterItems():
            np.testing.assert_allclose(p.getTransform().getMatrix(), first[p.getObjId()])
        self.assertEqual(prot.outputAgreeing.getSamplingRate(), PIXEL)
        # cross-FSC of the two maps: the same structure, so high everywhere
        self.assertSetSize(prot.outputFSCs, 1)
        x, y = prot.outputFSCs.getFirstItem().getData()
        self.assertEqual(len(x), BOX // 2)
        self.assertGreater(min(y[:BOX // 4]), 0.9)
        res = prot.getResults()
        s = res['summary']
        self.assertEqual((s['n_common'], s['n_disagree']), (N_PART, 9))
        self.assertLess(s['pairs'][0]['angle']['p50'], 2.0)
        self.assertLess(s['pairs'][0]['shift']['p50'], 1.0)
        summary = '\n'.join(prot.summary())
        self.assertIn('Agreeing particles: 91 of 100', summary)
        self.assertIn('hand same', summary)
        self.assertIn('Cross-FSC', summary)
        self.assertTrue(prot.methods())
        self.assertTrue(os.path.exists(prot.getReportPath()))
        for name in ('cross_fsc', 'fsc_curves', 'angles', 'shifts'):
            self.assertTrue(os.path.exists(prot._getExtraPath(name + '.png')), name)
        # viewer, headless
        from redprior.viewers import RedPriorConsensusViewer
        self.assertIn(RedPriorConsensusViewer, pwem.Domain.findViewers(prot, DESKTOP_TKINTER))
        viewer = RedPriorConsensusViewer(project=self.proj, protocol=prot)
        viewer.setProtocol(prot)
        out = os.path.abspath(self.proj.getTmpPath('consensus_viewer'))
        plotters = viewer._getVisualizeDict()['displayCrossFsc']()
        self.assertEqual(len(plotters), 1)
        self.assertEqual(len(plotters[0].getFigure().axes[0].images), 1)   # the heat map
        plotters[0].close()
        paths = viewer.saveFigures(out)
        self.assertEqual(len(paths), 4)
        for path in paths:
            self.assertGreater(os.path.getsize(path), 5000, path)

    def test_three_engines_majority_from_poses(self):
        parts3 = self._importPoses('engine 3', align3d.FrameTransform(pixel_size=PIXEL),
                                   angles.axis_angle_matrix((0.0, 1.0, 0.0), 30.0)[0],
                                   E3_ANGLE, [0.0, 8.0], E3_SHIFT)
        prot = self._consensus('three engines', [],
                               [self.sim.outputParticles, self.parts2, parts3],
                               alignFrom=FRAME_FROM_POSES, averagePoses=True)
        self.launchProtocol(prot)
        # 2 of 3 must agree: only particles that engines 2 and 3 both got wrong (and
        # differently) are lost
        both = sorted(set(E2_ANGLE + E2_SHIFT) & set(E3_ANGLE + E3_SHIFT))
        self.assertEqual(both, [10, 23, 40])
        self.assertEqual(self._ids(prot.outputDisagreeing), both)
        self.assertSetSize(prot.outputAgreeing, N_PART - len(both))
        t2, t3 = prot.getTransforms()[1:]
        self.assertEqual(t2['method'], 'poses')
        self.assertLess(angles.rotation_angle(np.array(t2['rotation']).T @ FRAME_R)[0], 0.1)
        np.testing.assert_allclose(t2['shift_A'], FRAME_T, atol=0.05)
        self.assertLess(t3['rotation_angle_deg'], 0.1)
        self.assertFalse(hasattr(prot, 'outputFSCs'))
        # mean poses of the agreeing engines = the true poses
        truth = {p.getObjId(): convert.relionPose(p.getTransform().getMatrix())
                 for p in self.sim.outputParticles.iterItems()}
        for p in prot.outputAgreeing.iterItems():
            R, o = convert.relionPose(p.getTransform().getMatrix())
            self.assertLess(angles.angular_distance(R, truth[p.getObjId()][0])[0], 0.2)
            np.testing.assert_allclose(o, truth[p.getObjId()][1], atol=0.05)
        s = prot.getResults()['summary']
        self.assertEqual(s['min_agree'], 2)
        self.assertLess(s['engines_in_majority'][s['engines'][1]], 1.0)

    def test_validation_messages(self):
        def errors(volumes, particles, **kwargs):
            return '\n'.join(self._consensus('validate', volumes, particles,
                                             **kwargs).validate())
        sim = self.sim
        self.assertIn('at least two refinements', errors([], [sim.outputParticles]))
        self.assertIn('one map per particle set',
                      errors([sim.outputVolume, self.vol2], [sim.outputParticles]))
        self.assertIn('align from the particle poses',
                      errors([], [sim.outputParticles, self.parts2]))
        self.assertEqual(errors([], [sim.outputParticles, self.parts2],
                                alignFrom=FRAME_FROM_POSES), '')
        self.assertEqual(errors([sim.outputVolume, self.vol2], []), '')
        self.assertIn('is not supported', errors([sim.outputVolume, self.vol2], [],
                                                 symmetry='X7'))
        small = self._importVolume('small.mrc', np.zeros((24,) * 3, np.float32))
        msg = errors([sim.outputVolume, small], [])
        self.assertIn('Map 2 is 24 px', msg)
        self.assertIn('--new_box 32', msg)
        coarse = self._importVolume('engine2_coarse.mrc',
                                    mrcio.read_map(self.vol2.getFileName())[0], pixel=5.0)
        self.assertIn('its map is at 5.000 A/px',
                      errors([sim.outputVolume, coarse], [sim.outputParticles, self.parts2]))
        # particles without angles
        raw = self.newProtocol(ProtImportParticles, objLabel='import unaligned',
                               importFrom=ProtImportParticles.IMPORT_FROM_FILES,
                               filesPath=sim._getExtraPath(),
                               filesPattern=C.SIM_PARTICLES_NAME + '.mrcs',
                               samplingRate=PIXEL)
        self.launchProtocol(raw)
        msg = errors([], [sim.outputParticles, raw.outputParticles],
                     alignFrom=FRAME_FROM_POSES)
        self.assertIn('Particle set 2', msg)
        self.assertIn('no 3D projection alignment', msg)


if __name__ == '__main__':
    unittest.main()
