"""The training manifest (redprior/data/training_manifest.json): reading, writing, and the
training chains it lists, located on this machine.

The manifest is built by `build.build_manifest` (scripts/build_training_set.py).
"""
import json
import logging
import os
from dataclasses import dataclass

from redprior.core.io.shipped import TRAINING_MANIFEST
from redprior.core.structure_set.chains import candidate_chains, read_model
from redprior.core.structure_set.sources import SOURCE_BY_NAME

log = logging.getLogger(__name__)

MANIFEST = TRAINING_MANIFEST
MANIFEST_VERSION = 1


def load_manifest(manifest):
    """The manifest as a dict: `manifest` itself when it is one, else read from that path."""
    if isinstance(manifest, dict):
        return manifest
    with open(manifest) as fh:
        return json.load(fh)


def write_manifest(manifest, out_json):
    """Write the manifest to out_json (through a temporary file: never half-written)."""
    os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
    tmp = out_json + ".tmp"
    with open(tmp, "w") as fh:
        _dump_manifest(manifest, fh)
    os.replace(tmp, out_json)


def _dump_manifest(manifest, fh):
    """JSON with one list item per line: small in git, and diffs show which chains changed."""
    fh.write("{\n")
    keys = list(manifest)
    for i, k in enumerate(keys):
        v = manifest[k]
        fh.write(f" {json.dumps(k)}: ")
        if isinstance(v, list):
            fh.write("[\n" + ",\n".join("  " + json.dumps(x) for x in v) + "\n ]")
        else:
            fh.write(json.dumps(v))
        fh.write(",\n" if i < len(keys) - 1 else "\n")
    fh.write("}\n")


@dataclass
class TrainingChain:
    id: str
    path: str
    chain: str
    entry: str
    mass_kda: float
    residues: int
    seq_hash: str

    def structure(self):
        """gemmi.Structure holding this chain only (for structure.potential_map)."""
        st, _ = read_model(self.path)
        model = st[0]
        for name in [ch.name for ch in model if ch.name != self.chain]:
            model.remove_chain(name)
        return st


def load_training_chains(manifest=MANIFEST, strict=False):
    """The manifest's chains with their files on this machine, for the training-maps step.

    Each chain's sequence is checked against its hash (a different package version could
    ship a different file under the same name). A chain whose source is not installed is
    skipped with a warning naming the install command, or raises when strict.
    """
    data = load_manifest(manifest)
    out, missing, parsed = [], {}, {}
    for e in data["chains"]:
        src = SOURCE_BY_NAME.get(e["source"])
        d = src.scan_dir() if src else None
        path = os.path.join(d, e["file"]) if d else None
        if path is None or not os.path.exists(path):
            missing.setdefault(e["source"], []).append(e["id"])
            continue
        if path not in parsed:  # several chains can come from one (large) file
            parsed[path] = candidate_chains(path, e["source"], e["file"])
        c = next((c for c in parsed[path] if c.chain == e["chain"]), None)
        if c is None or c.seq_hash != e["seq_hash"]:
            msg = (f"{e['id']}: the installed file no longer holds the manifest's chain "
                   "(sequence hash differs); rebuild with scripts/build_training_set.py.")
            if strict:
                raise ValueError(msg)
            log.warning(msg)
            continue
        out.append(TrainingChain(e["id"], path, e["chain"], e["entry"], e["mass_kda"],
                                 e["residues"], e["seq_hash"]))
    if missing:
        lines = [f"{name} ({len(ids)} chains): {SOURCE_BY_NAME[name].install}"
                 if name in SOURCE_BY_NAME else f"{name} ({len(ids)} chains)"
                 for name, ids in missing.items()]
        msg = "Training structures missing; install: " + "; ".join(lines)
        if strict:
            raise RuntimeError(msg)
        log.warning(msg)
    return out


def spread_subset(chains, n):
    """At most n of `chains`, as varied as the list allows, in the list's order.

    The manifest lists the chains of one entry together (6 of its first 10 are chains of two
    complexes), so its first n would be a few complexes. Instead: one chain of every entry
    first, then second chains, and so on; within the round that n ends in, the chains are
    taken evenly spaced over the list, so that the subset spans it rather than its start.
    """
    if n <= 0 or n >= len(chains):
        return list(chains)
    rounds, seen = [], {}
    for i, c in enumerate(chains):
        k = seen.get(c.entry, 0)
        seen[c.entry] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    picked = []
    for r in rounds:
        left = n - len(picked)
        if left >= len(r):
            picked += r
        else:  # the centres of `left` equal parts of this round
            picked += [r[int((j + 0.5) * len(r) / left)] for j in range(left)]
        if len(picked) == n:
            break
    return [chains[i] for i in sorted(picked)]
