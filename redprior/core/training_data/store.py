"""The on-disk store of training pairs (PairStore) and the merge of per-structure stores.

Pure numpy.
"""
import glob
import json
import os
import shutil

import numpy as np

from redprior.core.io.atomic import atomic_path


class PairStore:
    """A folder of training pairs: pair_NNNNNN.npz (x, target, fsc, resolution, structure,
    pixel_size, mode) plus manifest.json (box, pixel size and one small entry per pair).

    Pairs are read back one at a time (iter_pairs, batches in core.denoiser.training), so
    training never holds the whole set in memory. All pairs of a store share box and pixel
    size (the denoiser is trained at one of each). The manifest is rewritten every
    `flush_every` additions and on close(); pairs written after the last flush (a crash) are
    found again when the store is opened.
    """

    MANIFEST = "manifest.json"

    def __init__(self, folder, flush_every=50):
        self.folder = os.fspath(folder)
        self.flush_every = int(flush_every)
        os.makedirs(self.folder, exist_ok=True)
        self.box, self.pixel_size, self.entries = None, None, []
        self._dirty = 0
        path = os.path.join(self.folder, self.MANIFEST)
        if os.path.exists(path):
            with open(path) as fh:
                man = json.load(fh)
            self.box, self.pixel_size = man.get("box"), man.get("pixel_size")
            self.entries = list(man.get("pairs", []))
        self._recover()

    def _recover(self):
        known = {e["file"] for e in self.entries}
        for f in sorted(glob.glob(os.path.join(self.folder, "pair_*.npz"))):
            name = os.path.basename(f)
            if name in known:
                continue
            with np.load(f) as z:
                entry = dict(file=name, structure=str(z["structure"]),
                             resolution=float(z["resolution"]), mode=str(z["mode"]),
                             pixel_size=float(z["pixel_size"]))
                if self.box is None:
                    self.box, self.pixel_size = int(z["x"].shape[0]), entry["pixel_size"]
            self.entries.append(entry)
            self._dirty += 1
        if self._dirty:
            self.flush()

    def __len__(self):
        return len(self.entries)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add(self, x, target, fsc, resolution, structure, pixel_size, mode=""):
        """Write one pair; returns its index."""
        x = np.asarray(x, dtype=np.float32)
        n = x.shape[0]
        if self.box is None:
            self.box, self.pixel_size = int(n), float(pixel_size)
        if n != self.box or abs(float(pixel_size) - self.pixel_size) > 1e-6 * self.pixel_size:
            raise ValueError(f"Pair of box {n} at {pixel_size:g} A/px does not fit store "
                             f"{self.folder} (box {self.box} at {self.pixel_size:g} A/px); "
                             "resample the maps or use another store.")
        idx = len(self.entries)
        name = f"pair_{idx:06d}.npz"
        while os.path.exists(os.path.join(self.folder, name)):  # a pair after a crash
            idx += 1
            name = f"pair_{idx:06d}.npz"
        res = float(resolution) if np.isfinite(resolution) else float("inf")
        with atomic_path(os.path.join(self.folder, name), suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, x=x, target=np.asarray(target, dtype=np.float32),
                         fsc=np.asarray(fsc, dtype=np.float32), resolution=res,
                         structure=str(structure), pixel_size=float(pixel_size),
                         mode=str(mode))
        self.entries.append(dict(file=name, structure=str(structure), resolution=res,
                                 mode=str(mode), pixel_size=float(pixel_size)))
        self._dirty += 1
        if self._dirty >= self.flush_every:
            self.flush()
        return len(self.entries) - 1

    def add_pair(self, pair, structure, pixel_size):
        return self.add(pair[0], pair[1], pair[2], pair[3], structure, pixel_size,
                        getattr(pair, "mode", ""))

    def flush(self):
        man = dict(version=1, box=self.box, pixel_size=self.pixel_size, pairs=self.entries)
        path = os.path.join(self.folder, self.MANIFEST)
        with atomic_path(path, suffix=".json") as tmp:
            with open(tmp, "w") as fh:
                json.dump(man, fh, allow_nan=True)
        self._dirty = 0

    close = flush

    def structures(self):
        return sorted({e["structure"] for e in self.entries})

    def resolutions(self, indices=None):
        idx = range(len(self)) if indices is None else indices
        return np.array([self.entries[i]["resolution"] for i in idx], dtype=np.float64)

    def load(self, i):
        e = self.entries[i]
        with np.load(os.path.join(self.folder, e["file"])) as z:
            return dict(x=z["x"], target=z["target"], fsc=z["fsc"],
                        resolution=float(z["resolution"]), structure=str(z["structure"]),
                        pixel_size=float(z["pixel_size"]), mode=str(z["mode"]), index=i)

    def iter_pairs(self, indices=None, shuffle=False, seed=None):
        """Yield pairs one by one (dicts as load())."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if shuffle:
            idx = np.random.default_rng(seed).permutation(idx)
        for i in idx:
            yield self.load(int(i))


def merge_stores(folders, folder, relabel=None):
    """One PairStore in `folder` (emptied first) with the pairs of the stores in `folders`,
    in order, renumbered pair_NNNNNN.npz; folders without a manifest are skipped.

    relabel: optional function of a pair's structure label giving the label the merged
    manifest keeps (what the train/validation split groups by); the pair files keep theirs."""
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    idx = 0
    for part in folders:
        if not os.path.exists(os.path.join(part, PairStore.MANIFEST)):
            continue
        for e in PairStore(part).entries:
            dst = os.path.join(folder, "pair_%06d.npz" % idx)
            try:  # a hard link: no copy of possibly large maps
                os.link(os.path.join(part, e["file"]), dst)
            except OSError:
                shutil.copy2(os.path.join(part, e["file"]), dst)
            idx += 1
    store = PairStore(folder)  # finds the linked pairs and writes the manifest
    if relabel is not None:
        for e in store.entries:
            e["structure"] = relabel(e["structure"])
        store.flush()
    return store
