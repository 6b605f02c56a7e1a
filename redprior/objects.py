"""Data objects of the redprior plugin.

Scipion's mapper rebuilds custom EMObject subclasses only from this module, so every
persistent object the plugin defines lives here:
  * DenoiserModel: a trained denoiser (.keras file). Only its path is stored in the project;
    everything else (box, pixel size, training resolutions, normalisation, U-Net levels, the
    single-pass curve and the suggested CW-RED thresholds) is read from the model's .json
    metadata (core.denoiser.model), so the object and the file can never disagree.
  * TrainingPairs: a folder of training pairs (core.training_data.store.PairStore) with a few
    numbers copied from its manifest for display.
The simulate protocol only produces standard pwem objects (Volume, SetOfParticles).
No TensorFlow import here: the GUI lists these objects without loading a model.
"""

import pyworkflow.object as pwobj
from pwem.objects import FSC, EMObject


def _readJson(path):
    from redprior.core.io.jsonfile import read_json
    return read_json(path)


class DenoiserModel(EMObject):
    """A trained RED denoiser: a Keras .keras file with its .json metadata sidecar."""

    def __init__(self, filename=None, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._filename = pwobj.String(filename)

    # ---------------------------------------------------------------- files
    def getFileName(self):
        return self._filename.get()

    def setFileName(self, filename):
        self._filename.set(filename)

    def getMetadataFile(self):
        from redprior.core.denoiser.model import metadata_path
        return metadata_path(self.getFileName()) if self.getFileName() else None

    def getHistoryFile(self):
        """The loss history (<model>_history.json) written by 'train denoiser'."""
        from redprior.core.denoiser.training import history_path
        return history_path(self.getFileName()) if self.getFileName() else None

    def getMetadata(self):
        """The metadata dict ({} when the file is missing)."""
        return _readJson(self.getMetadataFile())

    def getHistory(self):
        return _readJson(self.getHistoryFile())

    # ---------------------------------------------------------------- metadata
    def _meta(self, key, default=None):
        return self.getMetadata().get(key, default)

    def getBox(self):
        return self._meta('box')

    def getSamplingRate(self):
        """Pixel size (A) the model was trained at."""
        px = self._meta('pixel_size')
        return float(px) if px is not None else None

    getPixelSize = getSamplingRate

    def getTrainingResolution(self):
        """(best, worst) nominal resolution (A) of the training maps, or None."""
        res = self._meta('training_resolution')
        return tuple(res) if res else None

    def getNormalisation(self):
        return self._meta('normalisation')

    def getLevels(self):
        return self._meta('levels')

    def getSinglePass(self):
        """The single-pass curve (L1/L2 error ratios per resolution bin) or None."""
        return self._meta('single_pass')

    def getSuggestedThresholds(self):
        """(cw_low, cw_high) in A suggested from the single-pass curve; (None, None) if none."""
        meta = self.getMetadata()
        return meta.get('cw_low'), meta.get('cw_high')

    def getThresholdReason(self):
        return self._meta('threshold_reason', '')

    def getPerShellLambda(self):
        return self._meta('per_shell_lambda')

    def hasPerShellLambda(self):
        from redprior.core.prior.schedule import has_shell_table
        return has_shell_table(self.getMetadata())

    def __str__(self):
        meta = self.getMetadata()
        if not meta:
            return 'DenoiserModel (%s: no metadata)' % self.getFileName()
        parts = ['%s levels' % meta.get('levels', '?'), 'box %s' % meta.get('box'),
                 '%g A/px' % meta.get('pixel_size')]
        res = meta.get('training_resolution')
        if res:
            parts.append('trained %.1f-%.1f A' % tuple(res))
        low, high = meta.get('cw_low'), meta.get('cw_high')
        if low is not None and high is not None:
            parts.append('CW-RED %.1f/%.1f A' % (low, high))
        return 'DenoiserModel (%s)' % ', '.join(parts)


class TrainingPairs(EMObject):
    """Training pairs (noisy map, FSC-filtered target) in a PairStore folder."""

    def __init__(self, folder=None, **kwargs):
        EMObject.__init__(self, **kwargs)
        self._folder = pwobj.String(folder)
        self._size = pwobj.Integer()
        self._box = pwobj.Integer()
        self._samplingRate = pwobj.Float()
        self._modes = pwobj.String()          # comma-separated, e.g. 'gaussian,perturbed_pose'
        self._structures = pwobj.Integer()
        self._bestResolution = pwobj.Float()  # A, finest nominal resolution of the maps
        self._worstResolution = pwobj.Float()

    def getFolder(self):
        return self._folder.get()

    def setFolder(self, folder):
        self._folder.set(folder)

    def getStore(self):
        """The core.training_data.store.PairStore (reads the manifest)."""
        from redprior.core.training_data.store import PairStore
        return PairStore(self.getFolder())

    def updateFromStore(self, store=None):
        """Copy count, box, pixel size, modes and resolution range from the store's manifest."""
        import math
        store = store or self.getStore()
        self._size.set(len(store))
        self._box.set(store.box)
        self._samplingRate.set(store.pixel_size)
        self._modes.set(','.join(sorted({e.get('mode', '') for e in store.entries})))
        self._structures.set(len(store.structures()))
        res = [r for r in store.resolutions() if math.isfinite(r)]
        self._bestResolution.set(min(res) if res else None)
        self._worstResolution.set(max(res) if res else None)

    def getSize(self):
        return self._size.get()

    def getBox(self):
        return self._box.get()

    def getSamplingRate(self):
        return self._samplingRate.get()

    def getModes(self):
        return [m for m in (self._modes.get() or '').split(',') if m]

    def getNumberOfStructures(self):
        return self._structures.get()

    def getResolutionRange(self):
        """(best, worst) nominal resolution in A of the finite ones, or None."""
        if self._bestResolution.get() is None:
            return None
        return self._bestResolution.get(), self._worstResolution.get()

    def __str__(self):
        rng = self.getResolutionRange()
        return ('TrainingPairs (%s pairs of %s structures, box %s, %s A/px, %s%s)'
                % (self.getSize(), self.getNumberOfStructures(), self.getBox(),
                   self.getSamplingRate(), '+'.join(self.getModes()) or 'no mode',
                   ', %.1f-%.1f A' % rng if rng else ''))


class RedPriorFSC(FSC):
    """An FSC curve whose resolution read-out is redprior's (core.fourier.fsc), so pwem's FSC
    viewer shows the same number as the reports: the last shell before the curve drops below
    the threshold, and "better than <Nyquist>" for a curve that never crosses (pwem's own
    read-out extrapolates linearly beyond the last point, i.e. beyond Nyquist)."""

    def calculateResolution(self, threshold=0.143, precision=2):
        from redprior.core.fourier.fsc import read_resolution
        x, y = self.getData()
        if len(x) < 3 or not x[1]:
            return super().calculateResolution(threshold, precision)
        box = 2 * (len(x) - 1)
        pixel = 1.0 / (float(x[1]) * box)  # x = shell / (box * pixel)
        r = read_resolution(y, box, pixel, threshold)
        # pwem's viewer writes "<label> (" + this + "Å)"
        if not r.crossed:
            return 'better than %.*f ' % (precision, r.nyquist_A)
        if r.angstrom is None:
            return 'worse than %.*f ' % (precision, box * pixel)
        return '%.*f ' % (precision, r.angstrom)
