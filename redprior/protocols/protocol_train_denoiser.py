"""'train denoiser': a 3D U-Net trained on TrainingPairs (Kimanius et al. 2021, sec. 3.1-3.2).

The numerics are core.denoiser.unet / core.denoiser.training / core.denoiser.single_pass; this protocol handles the form,
the log (one line per epoch) and the outputs: a DenoiserModel whose .json metadata carries the
box, pixel size, normalisation, training resolutions, the single-pass curve on the validation
structures, the suggested CW-RED thresholds (or why there are none) and the per-shell lambda
table that 'CW-RED per shell' needs. TensorFlow is imported only inside the training step.
"""
import os
import time

import numpy as np

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.protocols import EMProtocol

from redprior import Plugin
from redprior.objects import DenoiserModel

MODEL_FILE = 'denoiser.keras'
MIXED_PAIRS_DIR = 'mixed_pairs'
RELOAD_CHECK = 'reload_check.npz'
NEW_NETWORK = 'not continueFrom and not continueFromShipped'
NO_VALIDATION = ('no validation structures (validation fraction 0 or a single structure): '
                 'no single-pass curve, so no CW-RED thresholds or per-shell table are '
                 'suggested; use the paper\'s 10 / 4.5 A or train on 2+ structures')


class ProtRedPriorTrainDenoiser(EMProtocol):
    """Train the RED denoiser (3D U-Net with residual learning) on training pairs."""
    _label = 'train denoiser'
    _devStatus = BETA
    _possibleOutputs = {'outputDenoiser': DenoiserModel}

    # ------------------------------------------------------------------ form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputPairs', params.PointerParam, pointerClass='TrainingPairs',
                      important=True, label='Training pairs',
                      help='Output of "training maps". The box must be a multiple of '
                           '2^levels.')
        form.addParam('morePairs', params.MultiPointerParam, pointerClass='TrainingPairs',
                      allowsNull=True, minNumObjects=0, label='More training pairs (optional)',
                      help='Train on these sets too, mixed with the first: for example '
                           'RELION-intermediate pairs (what the hook really feeds the network; '
                           'the paper found such training better) with Gaussian-noise pairs '
                           '(more structures and resolutions for less CPU). Same box and pixel '
                           'size as the first set. A structure that is in several sets (the '
                           'same name) stays on one side of the train/validation split.')
        form.addParam('continueFrom', params.PointerParam, pointerClass='DenoiserModel',
                      allowsNull=True, label='Continue from (optional)',
                      help='Continue training this model (its U-Net size is kept and its loss '
                           'history is extended). Same pixel size as the pairs.')
        form.addParam('continueFromShipped', params.BooleanParam, default=False,
                      condition='not continueFrom',
                      label='Fine-tune the shipped denoiser?',
                      help='Start from the denoiser shipped with redprior (redprior/data/'
                           'denoiser, 2 A/px) instead of a new network: fine-tune it on your '
                           'pairs (for example RELION intermediates of your own kind of '
                           'sample). The shipped file is not changed; the result is this '
                           'protocol\'s output.')

        form.addSection(label='Network')
        form.addParam('levels', params.IntParam, default=4, validators=[params.GE(1)],
                      condition=NEW_NETWORK, label='U-Net levels',
                      help='Down/up-sampling stages (paper: 5 for 96^3 maps; 4 for 64^3).')
        form.addParam('baseFilters', params.IntParam, default=8, validators=[params.GE(1)],
                      condition=NEW_NETWORK, label='Base filters',
                      help='Channels of the first stage, doubled per stage (paper: 4).')
        form.addParam('weightDecay', params.FloatParam, default=1e-4,
                      validators=[params.GE(0)], condition=NEW_NETWORK,
                      label='Weight decay (L2)')

        form.addSection(label='Training')
        form.addParam('epochs', params.IntParam, default=27, validators=[params.GE(1)],
                      label='Epochs', help='The paper trained 27 epochs.')
        form.addParam('stepsPerEpoch', params.IntParam, default=0, validators=[params.GE(0)],
                      label='Steps per epoch', help='0: one pass over the training pairs.')
        form.addParam('batchSize', params.IntParam, default=10, validators=[params.GE(1)],
                      label='Mini-batch (maps)', help='The paper used 10.')
        form.addParam('cropSize', params.IntParam, default=0, validators=[params.GE(0)],
                      label='Crop (px)',
                      help='0: train on whole maps. Otherwise train on random sub-cubes of this '
                           'size (a multiple of 2^levels): a 32^3 crop costs an eighth of a '
                           '64^3 map, so a CPU sees many more examples per hour. The U-Net is '
                           'fully convolutional: it still denoises whole maps; validation uses '
                           'whole maps.')
        form.addParam('learningRate', params.FloatParam, default=1e-4,
                      label='Learning rate (Adam)', help='The paper used a constant 1e-4.')
        form.addParam('valFraction', params.FloatParam, default=0.1,
                      label='Validation fraction',
                      help='Fraction of the structures held out (whole structures). Their '
                           'pairs give the validation loss and the single-pass curve.')
        form.addParam('augment', params.BooleanParam, default=True,
                      label='Rotate maps (24 cube rotations)?')
        form.addParam('seed', params.IntParam, default=0, validators=[params.GE(0)],
                      label='Random seed')
        form.addParallelSection(threads=1, mpi=0)

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.trainStep, [p.getObjId() for p in self._pairSets()],
                                 needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def trainStep(self, pairsIds):
        import keras
        import tensorflow as tf

        from redprior.core.denoiser import training
        from redprior.core.denoiser.model import update_metadata
        from redprior.core.denoiser.unet import build_unet

        threads = max(1, self.numberOfThreads.get())
        try:  # only possible before TensorFlow runs its first operation
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
        keras.utils.set_random_seed(self.seed.get())
        store = self._trainingStore()
        out = self.getModelPath()
        for path in (out, training.history_path(out)):
            if os.path.exists(path):  # a re-run starts again from its input
                os.remove(path)
        model = self._startingModel()
        if model is not None:
            self.info('Continuing from %s' % model)
        else:
            model = build_unet(self.levels.get(), self.baseFilters.get(),
                               weight_decay=self.weightDecay.get())
        self.info('Training on %d pairs (%d structures) of %d^3 at %g A/px'
                  % (len(store), len(store.structures()), store.box, store.pixel_size))

        def progress(epoch, trainLoss, valLoss, seconds):
            self.info('epoch %d: train loss %.5g, val loss %s, %.1f s'
                      % (epoch, trainLoss, '%.5g' % valLoss if valLoss is not None else '-',
                         seconds))

        t0 = time.time()
        hist = training.train(model, store, epochs=self.epochs.get(),
                              batch=self.batchSize.get(), lr=self.learningRate.get(),
                              val_fraction=self.valFraction.get(), seed=self.seed.get(),
                              callback=progress, output=out,
                              steps_per_epoch=self.stepsPerEpoch.get() or None,
                              augment=self.augment.get(), crop=self.cropSize.get() or None,
                              name='redprior-unet-%s' % self.getObjId(),
                              description=self.getObjComment() or '')
        self.info('Trained in %.0f s; structures for validation: %s'
                  % (time.time() - t0, ', '.join(hist['structures_val']) or 'none'))
        meta = self.getResults()
        if meta.get('cw_low') is None and not meta.get('threshold_reason'):
            update_metadata(out, cw_low=None, cw_high=None, threshold_reason=NO_VALIDATION)
            meta = self.getResults()
        self._reloadCheck(store, hist, None if isinstance(model, str) else model)
        if meta.get('cw_low') is not None:
            self.info('Suggested CW-RED thresholds: lambda 0 worse than %.2f A, 1 better than '
                      '%.2f A (%s)' % (meta['cw_low'], meta['cw_high'], meta['threshold_reason']))
        else:
            self.info('No CW-RED thresholds suggested: %s' % meta.get('threshold_reason'))

    def _reloadCheck(self, store, hist, trained=None):
        """Reload the saved file (what a refinement will use) and run it on one validation
        map; with the trained weights still in memory, the two outputs must be identical."""
        import keras

        from redprior.core.denoiser.single_pass import keras_denoise_fn

        first = hist['structures_val'][0] if hist['structures_val'] else None
        idx = next((i for i, e in enumerate(store.entries)
                    if first is None or e['structure'] == first), 0)
        x = store.load(idx)['x']
        reloaded = keras.saving.load_model(self.getModelPath(), compile=False)
        y = keras_denoise_fn(reloaded)(x)
        diff = None
        if trained is not None:
            diff = float(np.abs(keras_denoise_fn(trained)(x) - y).max())
            self.info('Saved model reloaded: max |difference| to the trained weights on pair '
                      '%d: %.3g' % (idx, diff))
        np.savez(self._getExtraPath(RELOAD_CHECK), x=x, y=y, index=idx,
                 max_abs_diff=np.nan if diff is None else diff)

    def createOutputStep(self):
        model = DenoiserModel(filename=self.getModelPath())
        self._defineOutputs(outputDenoiser=model)
        self._defineSourceRelation(self.inputPairs, model)
        for ptr in self.morePairs:
            self._defineSourceRelation(ptr, model)
        if self.continueFrom.get() is not None:
            self._defineSourceRelation(self.continueFrom, model)

    # ------------------------------------------------------------------ helpers
    def _pairSets(self):
        """The TrainingPairs trained on: the first set, then 'More training pairs'."""
        sets = [self.inputPairs.get()] + [ptr.get() for ptr in self.morePairs]
        return [p for p in sets if p is not None]

    def _trainingStore(self):
        """The first set's PairStore, or, with more sets, one store of all their pairs
        (hard links in extra/, no copies) whose structures are grouped by name."""
        sets = self._pairSets()
        if len(sets) == 1:
            return sets[0].getStore()
        from redprior.core.training_data.ground_truth import structure_name
        from redprior.core.training_data.store import merge_stores

        self.info('Mixing %d sets of training pairs: %s' % (len(sets), '; '.join(
            '%d %s pairs of %d structure%s' % (p.getSize(), '+'.join(p.getModes()) or '-',
                                                p.getNumberOfStructures() or 0,
                                                '' if p.getNumberOfStructures() == 1 else 's')
            for p in sets)))
        return merge_stores([p.getFolder() for p in sets], self._getExtraPath(MIXED_PAIRS_DIR),
                            relabel=structure_name)

    def _startingModel(self):
        """The .keras file training continues from, or None for a new network."""
        if self.continueFrom.get() is not None:
            return os.path.abspath(self.continueFrom.get().getFileName())
        if self.continueFromShipped.get():
            from redprior.core.io.shipped import DEFAULT_DENOISER
            return DEFAULT_DENOISER
        return None

    def getModelPath(self):
        return self._getExtraPath(MODEL_FILE)

    def getHistoryPath(self):
        from redprior.core.denoiser.training import history_path
        return history_path(self.getModelPath())

    def getHistory(self):
        from redprior.core.io.jsonfile import read_json
        return read_json(self.getHistoryPath())

    def getResults(self):
        """The trained model's metadata ({} before training finished)."""
        from redprior.core.denoiser.model import metadata_path
        from redprior.core.io.jsonfile import read_json
        return read_json(metadata_path(self.getModelPath()))

    # ------------------------------------------------------------------ info
    @classmethod
    def validateInstallation(cls):
        return Plugin.missingPythonPackages('tensorflow')

    def _validate(self):
        errors = []
        pairs = self.inputPairs.get()
        if pairs is None:
            return ['Training pairs are required.']
        if not pairs.getSize():
            errors.append('The training pairs are empty.')
        box, pixel = pairs.getBox(), pairs.getSamplingRate()
        errors += self._mixProblems(box, pixel)
        levels = self.levels.get()
        start = self._startingModel()
        if start is not None:
            from redprior.core.denoiser.model import DenoiserError, read_metadata
            try:
                meta = read_metadata(start)
            except DenoiserError as exc:
                return errors + ['The model to continue from: %s' % exc]
            levels = meta.get('levels') or levels
            if pixel and meta.get('pixel_size') and abs(meta['pixel_size'] - pixel) > 1e-3 * pixel:
                errors.append('The model to continue from was trained at %g A/px, the pairs are '
                              'at %g A/px.' % (meta['pixel_size'], pixel))
        if box and levels and box % (2 ** levels):
            errors.append('The pairs\' box (%d px) must be a multiple of 2^levels = %d; use '
                          'fewer U-Net levels or another box.' % (box, 2 ** levels))
        crop = self.cropSize.get()
        if crop and levels and crop % (2 ** levels):
            errors.append('The crop (%d px) must be a multiple of 2^levels = %d.'
                          % (crop, 2 ** levels))
        if crop and box and crop > box:
            errors.append('The crop (%d px) is larger than the maps (%d px); use 0 for whole '
                          'maps.' % (crop, box))
        if not 0 <= self.valFraction.get() < 1:
            errors.append('The validation fraction must be in [0, 1).')
        if self.learningRate.get() <= 0:
            errors.append('The learning rate must be > 0.')
        return errors

    def _numberOfStructures(self):
        """Distinct structures (by name) over all sets trained on."""
        sets = self._pairSets()
        if len(sets) == 1:
            return sets[0].getNumberOfStructures() or 0
        from redprior.core.training_data.ground_truth import structure_name
        return len({structure_name(s) for p in sets for s in p.getStore().structures()})

    def _mixProblems(self, box, pixel):
        """'More training pairs' must match the first set's box and pixel size."""
        errors, seen = [], {self.inputPairs.get().getObjId()}
        for i, ptr in enumerate(self.morePairs, start=1):
            other = ptr.get()
            if other is None:
                continue
            name = 'More training pairs %d (%s)' % (i, other.getObjLabel() or other.getObjId())
            if other.getObjId() in seen:
                errors.append('%s is already an input: give each set once.' % name)
            seen.add(other.getObjId())
            if box and other.getBox() and other.getBox() != box:
                errors.append('%s has a box of %d px, the first set %d px: make both at one '
                              'box.' % (name, other.getBox(), box))
            if (pixel and other.getSamplingRate()
                    and abs(other.getSamplingRate() - pixel) > 1e-3 * pixel):
                errors.append('%s is at %g A/px, the first set at %g A/px: make both at one '
                              'pixel size.' % (name, other.getSamplingRate(), pixel))
        return errors

    def _warnings(self):
        pairs = self.inputPairs.get()
        if pairs is not None and (self.valFraction.get() == 0
                                  or self._numberOfStructures() < 2):
            return ['Without validation structures (validation fraction 0, or a single '
                    'structure) the model gets no single-pass curve, no suggested CW-RED '
                    'thresholds and no per-shell lambda table.']
        return []

    def _summary(self):
        hist = self.getHistory()
        if not hist.get('epochs'):
            return ['Not trained yet.']
        last = hist['epochs'][-1]
        meta = self.getResults()
        start = self._startingModel()
        lines = ['Continued from %s' % start] if start else []
        if len(self._pairSets()) > 1:
            used = hist.get('structures_train', []) + hist.get('structures_val', [])
            lines.append('Trained on %d sets of pairs, mixed (%d structures)'
                         % (len(self._pairSets()), len(used)))
        lines += ['%d epochs; last: train loss %.4g, val loss %s'
                 % (len(hist['epochs']), last['train_loss'],
                    '%.4g' % last['val_loss'] if last.get('val_loss') is not None else '-'),
                 'Validation structures: %s' % (', '.join(hist.get('structures_val', []))
                                                or 'none')]
        if meta.get('cw_low') is not None:
            lines.append('Suggested CW-RED: lambda 0 worse than %.2f A, 1 better than %.2f A'
                         % (meta['cw_low'], meta['cw_high']))
        else:
            lines.append('No suggested thresholds: %s' % meta.get('threshold_reason', '-'))
        return lines

    def _methods(self):
        return ['A 3D U-Net denoiser was trained with residual learning and an L2 loss on '
                'FSC-filtered targets as in Kimanius et al. (2021).']

    def _citations(self):
        return ['Kimanius2021']
