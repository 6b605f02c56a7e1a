"""Where the ground truths of 'training maps' (protocol_training_maps) come from: maps,
atomic models or the shipped training set, resolved to JSON-able structure entries
(core.training_data.ground_truth), and the validation of these inputs, reserved structures
included (core.structure_set.reserved).
"""
import json
import os

from redprior import constants as C
from redprior.core.training_data.ground_truth import (
    model_problems, reserved_problems, structure_id)
from redprior.core.structure_set.manifest import MANIFEST, load_training_chains, spread_subset
from redprior.core.structure_set.reserved import load_reserved
from redprior.protocols.training_maps_form import SRC_MAPS, SRC_MODELS


def _plainPath(fn):
    return fn[:-4] if fn and fn.endswith(':mrc') else fn


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


class GroundTruthInputsMixin:
    """The inputs of ProtRedPriorTrainingMaps (its form defines them)."""

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
            chains = load_training_chains(self._manifestPath())
            chains = spread_subset(chains, self.maxStructures.get())
            for c in chains:
                out.append(dict(kind='chain', path=c.path, chain=c.chain, entry=c.entry,
                                name=c.id, source=c.id))
        for i, s in enumerate(out):
            s['id'] = structure_id(i, s['name'])
        return out

    def _manifestPath(self):
        return self.manifest.get() or MANIFEST

    def _boxAndPixel(self):
        if self.inputSource.get() == SRC_MAPS:
            for vol in self._iterItems(self.inputVolumes):
                return vol.getXDim(), vol.getSamplingRate()
            return None, None
        return self.boxSize.get(), self.pixelSize.get()

    # ------------------------------------------------------------------ validation
    def _validateInputs(self):
        errors = []
        src = self.inputSource.get()
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
                errors += reserved_problems(model, reserved, 'The map %s was simulated from '
                                            'an excluded model: ' % v.getFileName())
        return errors

    def _validateModels(self):
        models = list(self._iterItems(self.inputAtomStructs))
        if not models:
            return ['Give at least one atomic model.']
        errors = []
        reserved = self._reservedChains(errors)
        for m in models:
            errors += model_problems(m.getFileName(), self.boxSize.get(), self.pixelSize.get(),
                                     reserved)
        return errors

    def _validateShipped(self):
        path = self._manifestPath()
        if not path or not os.path.exists(path):
            return ['The training-set manifest %s does not exist (it is built by '
                    'scripts/build_training_set.py).' % path]
        return []

    def _reservedChains(self, errors):
        try:
            return load_reserved()
        except Exception as exc:  # e.g. a reserved file neither installed nor in the manifest
            errors.append('Cannot load the reserved structures: %s' % exc)
            return None
