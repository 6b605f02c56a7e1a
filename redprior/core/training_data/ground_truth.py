"""Ground truths of training pairs: the structures 'training maps' resolves its inputs to.

A structure is a JSON-able entry {id, kind ('map' | 'model' | 'chain'), path, name, source,
...}; ground_truth turns it into a map on the training grid, refusing reserved structures
(reserved.check_not_reserved): a map through the atomic model it was simulated from, when
that is known. Pure numpy (+ gemmi through core.simulation.structure).
"""
import os
import re

import numpy as np

from redprior.core.structure_set.manifest import TrainingChain
from redprior.core.structure_set.reserved import check_not_reserved
from redprior.core.structure_set.reserved_maps import check_map_not_reserved

_MODEL_OR_MAP = re.compile(r'\.(pdb|cif|ent|mrc|map)(\.gz)?$', re.I)


def structure_id(index, name):
    """'sNNN_<name>' (file extension dropped, odd characters replaced): a folder name too."""
    safe = re.sub(r'[^A-Za-z0-9_.-]+', '_', _MODEL_OR_MAP.sub('', name)).strip('_')
    return 's%03d_%s' % (index, safe or 'structure')


def structure_name(structure_id_):
    """The name part of a structure_id ('s003_1tii' -> '1tii'): the same structure under
    another input position in another set of pairs has the same name."""
    return re.sub(r'^s\d{3}_', '', str(structure_id_))


def check_reserved(path_or_structure, label=None, reserved=None):
    """check_not_reserved, with `label` in front of its message."""
    try:
        return check_not_reserved(path_or_structure, reserved=reserved)
    except ValueError as exc:
        raise ValueError('%s%s' % ('%s: ' % label if label else '', exc)) from exc


def ground_truth(entry, box, pixel_size):
    """(float64 map, pixel size) of one structure entry; box and pixel_size are the grid of
    atomic models and chains (a map keeps its own). ValueError for a reserved structure
    (defence in depth: the protocol's validation checks too, but a run can be started
    without it) or a chain that does not fit the box."""
    from redprior.core.io import mrc as mrcio
    from redprior.core.simulation import structure

    if entry['kind'] == 'map':
        if entry['source'] != entry['path']:
            check_reserved(entry['source'])
        vol, header = mrcio.read_map(entry['path'])
        mrcio.check_cube(vol, entry['path'])
        pixel = float(entry.get('pixel') or header)
        # by content too: a copied map no longer says which model it was simulated from
        check_map_not_reserved(vol, pixel, label=entry['path'])
        return vol.astype(np.float64), pixel
    if entry['kind'] == 'model':
        check_reserved(entry['path'])
        model = entry['path']
    else:
        chain = TrainingChain(entry['name'], entry['path'], entry['chain'], entry['entry'], 0.0,
                              0, '')
        model = chain.structure()
        check_reserved(model, label=entry['name'])
    return structure.potential_map(model, box, pixel_size).astype(np.float64), pixel_size


def reserved_problems(path_or_structure, reserved, prefix=''):
    """[prefix + why] when a model is (or looks like) a reserved structure or cannot be
    checked against `reserved` (reserved.load_reserved()); [] when it may be used."""
    try:
        check_reserved(path_or_structure, reserved=reserved)
    except (ValueError, RuntimeError) as exc:
        return [prefix + str(exc)]
    return []


def model_problems(path, box, pixel_size, reserved=None):
    """Messages for an atomic model given for training: reserved (checked when `reserved`
    is given), unreadable, or not fitting a box of `box` px at `pixel_size` A/px."""
    from redprior.core.simulation import structure

    errors = [] if reserved is None else reserved_problems(path, reserved)
    try:
        summary = structure.structure_summary(structure.read_structure(path))
    except ValueError as exc:
        return errors + [str(exc)]
    if box and pixel_size and pixel_size > 0:
        need = structure.min_box_for(summary['max_radius_A'], pixel_size)
        if box < need:
            errors.append('%s does not fit in a box of %d px at %g A/px: use a box of '
                          'at least %d px.' % (os.path.basename(path), box, pixel_size, need))
    return errors
