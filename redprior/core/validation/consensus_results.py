"""Files of a consensus run and what is read back from them.

Pure numpy + json; no Scipion. In the run's folder:
  * map_01.mrc, poses_01.npz (PoseSet.save), aligned_01.mrc, ...: the inputs (INPUT_FILES)
    and fsc_mask.mrc, the mask of the cross-FSC (consensus_maps);
  * transforms.json: the frame transform of every input (FrameTransform.to_dict());
  * consensus.json: summary (ConsensusResult.summary()), transforms, cross-FSC and extras;
  * consensus_particles.npz: the per-particle arrays of the ConsensusResult.
"""
import json
import os

import numpy as np

RESULT_JSON = 'consensus.json'
RESULT_NPZ = 'consensus_particles.npz'
TRANSFORMS_JSON = 'transforms.json'
# per input k = 1, 2, ...: its map and poses as read, and its map in the reference frame
INPUT_FILES = {'map': 'map_%02d.mrc', 'poses': 'poses_%02d.npz', 'aligned': 'aligned_%02d.mrc'}
FSC_MASK = 'fsc_mask.mrc'


def input_paths(folder, kind, n):
    """The INPUT_FILES[kind] of inputs 1..n in folder."""
    return [os.path.join(folder, INPUT_FILES[kind] % (k + 1)) for k in range(n)]


def save_transforms(folder, transforms):
    """Write transforms.json (a list of FrameTransform.to_dict()); returns its path."""
    path = os.path.join(folder, TRANSFORMS_JSON)
    with open(path, 'w') as fh:
        json.dump(transforms, fh, indent=1)
    return path


def load_transforms(folder):
    """The list saved by save_transforms ([] before it was written)."""
    path = os.path.join(folder, TRANSFORMS_JSON)
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return json.load(fh)


def _nan_to_none(a):
    return [[None if not np.isfinite(x) else float(x) for x in row] for row in np.asarray(a)]


def save_result(folder, result, transforms=None, fsc_result=None, extra=None):
    """Write consensus.json (summary, frame transforms, cross-FSC) and
    consensus_particles.npz (per-particle arrays). Returns the JSON path."""
    os.makedirs(folder, exist_ok=True)
    data = dict(summary=result.summary() if result is not None else None)
    if transforms is not None:
        data['transforms'] = [t.to_dict() if t is not None else None for t in transforms]
    if fsc_result is not None:
        data['fsc'] = dict(names=fsc_result['names'], freq=fsc_result['freq'].tolist(),
                           curves=[dict(pair=[int(i), int(j)], fsc=c.tolist())
                                   for (i, j), c in fsc_result['curves'].items()],
                           res05=_nan_to_none(fsc_result['res05']),
                           res0143=_nan_to_none(fsc_result['res0143']),
                           crossed05=fsc_result['crossed05'].tolist(),
                           crossed0143=fsc_result['crossed0143'].tolist())
    if extra:
        data.update(extra)
    path = os.path.join(folder, RESULT_JSON)
    with open(path + '.tmp', 'w') as fh:
        json.dump(data, fh, indent=1)
    os.replace(path + '.tmp', path)
    if result is not None:
        np.savez(os.path.join(folder, RESULT_NPZ), ids=result.ids,
                 pairs=np.array(result.pairs, dtype=np.int64).reshape(-1, 2),
                 angle=result.angle, shift=result.shift, pair_agree=result.pair_agree,
                 group=result.group, agree=result.agree,
                 consensus_rotations=result.consensus_rotations,
                 consensus_shifts_A=result.consensus_shifts_A,
                 names=np.array(result.names))
    return path


def load_result(folder):
    """(json dict, npz dict or None) as written by save_result."""
    with open(os.path.join(folder, RESULT_JSON)) as fh:
        data = json.load(fh)
    npz = os.path.join(folder, RESULT_NPZ)
    arrays = None
    if os.path.exists(npz):
        with np.load(npz) as d:
            arrays = {k: d[k] for k in d.files}
    return data, arrays


def read_summary(folder):
    """The consensus.json dict ({} before save_result wrote it)."""
    path = os.path.join(folder, RESULT_JSON)
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def particle_subsets(arrays, mean_poses=False):
    """[('agreeing', ids, poses), ('disagreeing', ids, None)] from load_result's arrays.

    ids: set of particle ids; poses: None, or with mean_poses {id: (consensus rotation,
    consensus origin in A)} for the agreeing particles.
    """
    ids, agree = arrays['ids'], arrays['agree']
    poses = None
    if mean_poses:
        poses = {int(i): (R, o) for i, R, o in zip(ids, arrays['consensus_rotations'],
                                                   arrays['consensus_shifts_A'])}
    return [('agreeing', set(ids[agree].tolist()), poses),
            ('disagreeing', set(ids[~agree].tolist()), None)]


def fsc_curves(data):
    """[(label 'a vs b', frequencies, FSC)] of the cross-FSC in data, without the 0 shell."""
    f = data.get('fsc')
    if not f:
        return []
    out = []
    for c in f['curves']:
        i, j = c['pair']
        out.append(('%s vs %s' % (f['names'][i], f['names'][j]), f['freq'][1:], c['fsc'][1:]))
    return out
