"""Training the RED denoiser on a PairStore (Kimanius et al. 2021, sec. 3.1-3.2).

Per map standardisation (x - mean) / std of the input, with the target standardised by the
*input's* mean and std (as at inference, where the output is de-standardised with them);
augmentation by the 24 proper rotations of the cube; validation split by structure id (maps
of one structure at other resolutions would otherwise leak into validation); Adam on the L2
loss plus the model's weight decay. The result is saved with the metadata that
core.denoiser.model.Denoiser needs. TensorFlow is imported only when training runs.
"""
import json
import os
import time

import numpy as np

HISTORY_SUFFIX = "_history.json"


# ---------------------------------------------------------------------------- rotations
def _orientations():
    # which direction axis 0 is sent to: identity, 90/180/270 about axis 2 (plane 0-1),
    # and +-90 about axis 1 (plane 0-2): the six faces of the cube
    return [[], [(1, (0, 1))], [(2, (0, 1))], [(3, (0, 1))], [(1, (0, 2))], [(3, (0, 2))]]


# Each rotation is a list of np.rot90 steps (k, axes) on a (z, y, x) volume: six ways to
# place axis 0, times four spins about it (plane 1-2). rot90 compositions are always
# proper (det +1); the test checks that the 24 are distinct.
CUBE_ROTATIONS = [o + ([(k, (1, 2))] if k else []) for o in _orientations() for k in range(4)]


def rotate(vol, rotation, offset=0):
    """Apply one CUBE_ROTATIONS entry to the three spatial axes starting at `offset`."""
    for k, (a, b) in rotation:
        vol = np.rot90(vol, k, (a + offset, b + offset))
    return vol


def rotation_matrix(rotation):
    """The 3x3 integer matrix acting on (z, y, x) voxel offsets of a CUBE_ROTATIONS entry."""
    probe = np.zeros((3, 3, 3), dtype=np.int64)
    cols = []
    for axis in range(3):
        p = probe.copy()
        idx = [1, 1, 1]
        idx[axis] = 2
        p[tuple(idx)] = 1
        where = np.argwhere(rotate(p, rotation) == 1)[0] - 1
        cols.append(where)
    return np.array(cols).T


# ------------------------------------------------------------------------- data handling
def standardise(x, target=None):
    """(x - mean) / std of x; the target (if any) with x's mean and std."""
    mu, sd = float(np.mean(x)), float(np.std(x))
    sd = sd if sd > 0 else 1.0
    xs = ((x - mu) / sd).astype(np.float32)
    return xs if target is None else (xs, ((target - mu) / sd).astype(np.float32))


def split_by_structure(store, val_fraction=0.1, seed=0):
    """(train indices, val indices, train structures, val structures) of a PairStore.

    Whole structures go to validation (at least one when val_fraction > 0 and there are
    two or more), so no structure id is on both sides.
    """
    structs = store.structures()
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(structs)))
    n_val = int(round(val_fraction * len(structs))) if val_fraction > 0 else 0
    if val_fraction > 0 and len(structs) >= 2:
        n_val = min(max(n_val, 1), len(structs) - 1)
    val_s = sorted(structs[i] for i in order[:n_val])
    val_set = set(val_s)
    train, val = [], []
    for i, e in enumerate(store.entries):
        (val if e["structure"] in val_set else train).append(i)
    train_s = sorted(set(structs) - val_set)
    return np.array(train, dtype=np.int64), np.array(val, dtype=np.int64), train_s, val_s


def random_crop(x, t, crop, rng):
    """The same random crop^3 sub-cube of x and t (crop >= the box: unchanged)."""
    n = x.shape[0]
    if not crop or crop >= n:
        return x, t
    z, y, w = (int(v) for v in rng.integers(0, n - crop + 1, size=3))
    sl = (slice(z, z + crop), slice(y, y + crop), slice(w, w + crop))
    return x[sl], t[sl]


def batches(store, indices, batch, rng=None, augment=True, shuffle=True, crop=None):
    """Yield standardised (x, target) float32 batches (b, n, n, n, 1), one pair read at a time.

    crop: train on random crop^3 sub-cubes (the U-Net is fully convolutional, so it still
    denoises whole maps). The standardisation uses the whole map's mean and std, as at
    inference, so a crop is scaled like the same region of a whole map.
    """
    rng = np.random.default_rng(rng)
    idx = np.asarray(indices, dtype=np.int64)
    if shuffle:
        idx = rng.permutation(idx)
    xs, ts = [], []
    for i in idx:
        p = store.load(int(i))
        x, t = standardise(p["x"], p["target"])
        if augment:
            r = CUBE_ROTATIONS[int(rng.integers(len(CUBE_ROTATIONS)))]
            x, t = rotate(x, r), rotate(t, r)
        x, t = random_crop(x, t, crop, rng)
        xs.append(np.ascontiguousarray(x)[..., None])
        ts.append(np.ascontiguousarray(t)[..., None])
        if len(xs) == batch:
            yield np.stack(xs), np.stack(ts)
            xs, ts = [], []
    if xs:
        yield np.stack(xs), np.stack(ts)


# ------------------------------------------------------------------------------ training
def history_path(model_path):
    return os.path.splitext(model_path)[0] + HISTORY_SUFFIX


def _load_model(model):
    import keras

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ValueError(f"Cannot continue training: model {path} does not exist.")
        return keras.saving.load_model(path, compile=True), path
    return model, None


def _optimizer(model, lr):
    import keras

    opt = getattr(model, "optimizer", None)
    if opt is None or not isinstance(opt, keras.optimizers.Adam):
        opt = keras.optimizers.Adam(learning_rate=lr)
        # compiled so that model.save() keeps Adam's moments for a later continuation
        model.compile(optimizer=opt, loss="mse")
    else:
        opt.learning_rate.assign(lr)
    return opt


def evaluate_loss(model, store, indices, batch=2):
    """Mean L2 loss of standardised maps (no augmentation, inference mode); None if no pairs."""
    if len(indices) == 0:
        return None
    tot, count = 0.0, 0
    for x, t in batches(store, indices, batch, augment=False, shuffle=False):
        y = np.asarray(model(x, training=False))
        tot += float(np.sum((y - t) ** 2))
        count += t.size
    return tot / count


def train(model, store, epochs=1, batch=2, lr=1e-4, val_fraction=0.1, seed=0, callback=None,
          output=None, steps_per_epoch=None, augment=True, name="redprior-unet",
          description="", single_pass=True, crop=None):
    """Train `model` (a Keras model, or the path of a saved one to continue) on a PairStore.

    Each epoch runs `steps_per_epoch` mini-batches (default: one pass over the training
    pairs) of `batch` maps, randomly rotated, then the validation loss on the held-out
    structures. callback(epoch, train_loss, val_loss, seconds) is called after each epoch
    (train_loss: mean L2 data term of the epoch, without the weight penalty; val_loss None
    without validation structures). With `output` (a .keras path) the model is saved there
    with its metadata (see denoiser.save_model; single_pass=True adds the single-pass curve and
    suggested CW-RED thresholds on the validation pairs) and the loss history as
    <output>_history.json. Continuing from a path appends to that model's history.
    crop: train on random crop^3 sub-cubes of the maps (a multiple of 2^levels; cheaper steps,
    more of them); validation and the single-pass curve always use whole maps.
    Returns the history dict.
    """
    import tensorflow as tf

    from redprior.core.denoiser.unet import unet_levels

    if len(store) == 0:
        raise ValueError(f"The pair store {store.folder} is empty: generate training pairs first.")
    model, src = _load_model(model)
    levels = unet_levels(model)
    mult = 2 ** levels
    if store.box % mult:
        raise ValueError(f"Maps of box {store.box} cannot pass a U-Net with {levels} levels: "
                         f"the box must be a multiple of {mult}.")
    if crop and crop % mult:
        raise ValueError(f"Crops of {crop} px cannot pass a U-Net with {levels} levels: the "
                         f"crop must be a multiple of {mult}.")
    history = dict(epochs=[], structures_train=[], structures_val=[])
    if src and os.path.exists(history_path(src)):
        with open(history_path(src)) as fh:
            history = json.load(fh)
    tr, va, tr_s, va_s = split_by_structure(store, val_fraction, seed)
    if len(tr) == 0:
        raise ValueError("No training pairs left after the validation split; lower "
                         "val_fraction or add structures.")
    history.update(structures_train=tr_s, structures_val=va_s, batch=batch, lr=lr, crop=crop,
                   store=os.path.abspath(store.folder))
    opt = _optimizer(model, lr)
    variables = model.trainable_variables
    if not opt.built:  # create Adam's moments outside the traced step
        opt.build(variables)

    @tf.function(reduce_retracing=True)
    def step(x, t):
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            mse = tf.reduce_mean(tf.square(y - t))
            loss = mse + (tf.add_n(model.losses) if model.losses else 0.0)
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return mse

    rng = np.random.default_rng(seed + len(history["epochs"]))
    steps = steps_per_epoch or int(np.ceil(len(tr) / batch))
    first = len(history["epochs"]) + 1
    for epoch in range(first, first + int(epochs)):
        t0 = time.time()
        losses, done = [], 0
        while done < steps:  # as many passes over the training pairs as the steps need
            for x, t in batches(store, tr, batch, rng, augment, crop=crop):
                losses.append(float(step(tf.constant(x), tf.constant(t))))
                done += 1
                if done >= steps:
                    break
        val = evaluate_loss(model, store, va, batch)
        sec = time.time() - t0
        rec = dict(epoch=epoch, train_loss=float(np.mean(losses)), val_loss=val,
                   seconds=round(sec, 3), steps=done)
        history["epochs"].append(rec)
        if callback is not None:
            callback(epoch, rec["train_loss"], val, sec)
    if output:
        save_trained(model, output, store, history, tr, va, name, description, single_pass)
    return history


def training_metadata(model, store, train_indices, name="redprior-unet", description=""):
    """The denoiser metadata (core.denoiser.model.read_metadata) of a model trained on a store."""
    from redprior.core.denoiser.unet import unet_levels

    levels = unet_levels(model)
    res = store.resolutions(train_indices)
    res = res[np.isfinite(res)]
    return dict(
        name=name,
        description=description or (
            f"3D U-Net ({levels} levels, {model.count_params()} parameters) trained by redprior "
            f"on {len(train_indices)} pairs of {len(store.structures())} structures"),
        box=int(store.box), pixel_size=float(store.pixel_size), normalisation="standardise",
        # the model subtracts its noise estimate itself: Denoiser must not do it again
        residual=False, residual_learning=True, multiple=int(2 ** levels), levels=levels,
        training_resolution=[float(res.min()), float(res.max())] if len(res) else None,
        parameters=int(model.count_params()))


def save_trained(model, path, store, history, train_indices, val_indices, name="redprior-unet",
                 description="", single_pass=True):
    """Save model + metadata (+ single-pass curve and thresholds) + loss history."""
    from redprior.core.denoiser.model import save_model

    meta = training_metadata(model, store, train_indices, name, description)
    meta["epochs"] = len(history["epochs"])
    meta["structures_val"] = history.get("structures_val", [])
    if single_pass and len(val_indices):
        from redprior.core.denoiser import single_pass as sp

        result = sp.evaluate(sp.keras_denoise_fn(model), store, val_indices)
        meta.update(sp.metadata_fields(result))
    save_model(model, path, meta)
    with open(history_path(path), "w") as fh:
        json.dump(history, fh, indent=1)
    return meta
