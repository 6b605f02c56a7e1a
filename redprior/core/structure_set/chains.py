"""One protein chain of a model file: reading it, the chain rules, identity and de-duplication.

`candidate_chains` splits a model file into single protein chains with what the rule looks
at (mass, residues, sequence, gaps); `chain_problem` says why a chain is not used;
`deduplicate` keeps one chain per group of near-identical sequences.
"""
import functools
import hashlib
import math
import os
import re
from dataclasses import dataclass, field

import gemmi
import numpy as np

from redprior.core.simulation.structure import clean_structure
from redprior.core.structure_set.rule import (
    DEDUP_IDENTITY, MAX_GAP_RESIDUES, MAX_KDA, MAX_MISSING_FRACTION, MIN_KDA,
    MIN_STANDARD_FRACTION, MIN_TM_RESIDUES)
from redprior.core.structure_set.sources import MODEL_FILE


@dataclass
class Chain:
    """One protein chain of a model file, with what the rule looks at."""
    source: str
    file: str              # relative to the source's scan directory
    path: str              # absolute
    chain: str
    entry: str = None      # PDB id, from the header or the file name
    method: str = None     # experimental method from the header, None when stripped
    resolution: float = None
    n_models: int = 1
    residues: int = 0      # modelled residues with a CA atom
    atoms: int = 0
    mass_kda: float = 0.0  # sequence weight of the modelled residues
    sequence: str = ""
    standard_fraction: float = 1.0
    longest_gap: int = 0
    missing_fraction: float = 0.0
    ca: np.ndarray = field(default=None, repr=False)

    @property
    def key(self):
        return f"{self.source}:{self.file}:{self.chain}"

    @property
    def seq_hash(self):
        return sequence_hash(self.sequence)


def sequence_hash(seq):
    return hashlib.sha256(seq.encode("ascii")).hexdigest()[:16]


def _read_any(path):
    try:
        return gemmi.read_structure(path)
    except RuntimeError as exc:
        # Some ASTRAL/SCOP files put text in the charge columns (79-80) that gemmi rejects.
        if "charge" in str(exc) and not re.search(r"\.cif(\.gz)?$", path, re.I):
            return gemmi.read_pdb(path, max_line_length=78)
        raise


def _entry_id(st, path):
    """PDB id from the header, else from the file name (pdb3enl, 1a5z_A, d1cih__, 4akeA_...)."""
    ident = dict(st.info).get("_entry.id", "").strip().upper()
    if re.fullmatch(r"[1-9][0-9A-Z]{3}", ident):
        return ident
    base = re.sub(MODEL_FILE, "", os.path.basename(path)).lower()
    for tok in re.split(r"[_\-.]", base):
        tok = re.sub(r"^(pdb|mmcif|mmtf|d(?=[1-9][0-9a-z]{3}))", "", tok)
        # the id alone, or followed by a chain letter (1ahsA, 4akeA_alg_fixed)
        if re.fullmatch(r"[1-9][0-9a-z]{3}[a-z]?", tok):
            return tok[:4].upper()
    return None


def _method(st):
    methods = [e.method.upper() for e in st.meta.experiments if e.method]
    info = dict(st.info)
    if not methods and info.get("_exptl.method"):
        methods = [info["_exptl.method"].upper()]
    if methods:
        return ";".join(methods)
    # Some trimmed files keep TITLE but not EXPDTA (7DDO: "CRYO-EM STRUCTURE OF ...").
    title = info.get("_struct.title", "").upper()
    for word, method in (("CRYO-EM", "ELECTRON MICROSCOPY (from title)"),
                         ("CRYOEM", "ELECTRON MICROSCOPY (from title)"),
                         ("NMR", "SOLUTION NMR (from title)")):
        if word in title:
            return method
    return None


def _one_letter(name):
    tab = gemmi.find_tabulated_residue(name)
    if tab is not None and tab.is_amino_acid() and tab.one_letter_code.strip():
        return tab.one_letter_code.upper()
    return "X"


def read_model(path):
    """(structure, header) of a model file; the structure keeps model 1's polymer atoms only."""
    st = _read_any(os.fspath(path))
    header = dict(entry=_entry_id(st, os.fspath(path)), method=_method(st),
                  resolution=float(st.resolution) if st.resolution > 0 else None,
                  n_models=len(st))
    clean_structure(st)
    return st, header


def chains_of_structure(st, header=None, source="", file="", path=""):
    """Chain records for every protein chain of model 1 (non-protein polymers are skipped)."""
    header = header or {}
    out = []
    if len(st) == 0:
        return out
    for ch in st[0]:
        pol = ch.get_polymer()
        if len(pol) == 0 or pol.check_polymer_type() != gemmi.PolymerType.PeptideL:
            continue
        names, ca, nums, atoms = [], [], [], 0
        for res in pol:
            atoms += len(res)
            a = res.find_atom("CA", "*")
            if a is None:
                continue
            names.append(res.name)
            ca.append((a.pos.x, a.pos.y, a.pos.z))
            nums.append(res.seqid.num)
        if not names:
            continue
        ca = np.asarray(ca, dtype=np.float64)
        seq = "".join(_one_letter(n) for n in names)
        gaps = _gaps(ca, nums)
        span = len(names) + sum(gaps)
        out.append(Chain(
            source=source, file=file, path=path, chain=ch.name,
            entry=header.get("entry"), method=header.get("method"),
            resolution=header.get("resolution"), n_models=header.get("n_models", 1),
            residues=len(names), atoms=atoms,
            mass_kda=gemmi.calculate_sequence_weight(names) / 1000.0,
            sequence=seq, standard_fraction=1.0 - seq.count("X") / len(seq),
            longest_gap=max(gaps, default=0),
            missing_fraction=sum(gaps) / span if span else 0.0, ca=ca))
    return out


def _gaps(ca, nums):
    """Missing residues at each chain break. A break is a CA-CA distance > 4.2 A: residue
    numbers alone mislead (trypsins use chymotrypsin numbering, with jumps and no hole)."""
    if len(ca) < 2:
        return []
    d = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    gaps = []
    for i in np.nonzero(d > 4.2)[0]:
        by_number = nums[i + 1] - nums[i] - 1
        by_distance = math.ceil(d[i] / 3.8) - 1
        gaps.append(max(1, by_number if by_number > 0 else by_distance))
    return gaps


def candidate_chains(path, source="", file=""):
    """Split a model file into single protein chains with mass, residues, sequence, gaps."""
    st, header = read_model(path)
    return chains_of_structure(st, header, source=source, file=file or os.path.basename(path),
                               path=os.path.abspath(path))


# ---- the chain rules -----------------------------------------------------------------------


def chain_problem(chain, min_kda=MIN_KDA, max_kda=MAX_KDA):
    """Why a chain is not used (None when it is). The mass filter is the last check."""
    if chain.atoms < 3 * chain.residues:
        return "CA-only (or backbone-only) model"
    if chain.standard_fraction < MIN_STANDARD_FRACTION:
        return f"only {100 * chain.standard_fraction:.0f}% standard amino acids"
    if chain.longest_gap > MAX_GAP_RESIDUES:
        return f"gap of {chain.longest_gap} residues (> {MAX_GAP_RESIDUES})"
    if chain.missing_fraction > MAX_MISSING_FRACTION:
        return f"{100 * chain.missing_fraction:.0f}% of its span missing"
    if not (min_kda <= chain.mass_kda <= max_kda):
        return f"mass {chain.mass_kda:.1f} kDa outside {min_kda:g}-{max_kda:g} kDa"
    return None


def mass_filter(chains, min_kda=MIN_KDA, max_kda=MAX_KDA):
    """The chains whose mass (kDa) lies in [min_kda, max_kda]."""
    return [c for c in chains if min_kda <= c.mass_kda <= max_kda]


# ---- sequence identity and de-duplication ---------------------------------------------------

_ALIGNER = None


def _aligner():
    global _ALIGNER
    if _ALIGNER is None:
        from Bio import Align
        al = Align.PairwiseAligner()
        al.mode = "global"
        al.match_score, al.mismatch_score = 2.0, -1.0
        al.open_gap_score, al.extend_gap_score = -5.0, -0.5
        # free end gaps: a fragment of a chain aligns onto its part of the chain
        al.end_gap_score = 0.0
        _ALIGNER = al
    return _ALIGNER


@functools.lru_cache(maxsize=4096)
def _kmers(seq, k=3):
    return frozenset(seq[i:i + k] for i in range(len(seq) - k + 1))


def sequence_identity(a, b):
    """Identical aligned residues / length of the shorter sequence (at least 30) (0..1).

    Semi-global alignment (free end gaps, real internal gap penalties, so unrelated
    sequences stay at ~0.1-0.3 whatever their lengths). Pairs sharing few 3-mers are
    unrelated and skip the alignment: 90 % identity keeps most 3-mers.
    """
    if not a or not b:
        return 0.0
    if a == b and len(a) >= MIN_TM_RESIDUES:
        return 1.0
    ka, kb = _kmers(a), _kmers(b)
    if ka and kb and len(ka & kb) < 0.2 * min(len(ka), len(kb)):
        return 0.0
    aln = _aligner().align(a, b)[0]
    same = 0
    for (a0, a1), (b0, b1) in zip(*aln.aligned):
        same += sum(x == y for x, y in zip(a[a0:a1], b[b0:b1]))
    # floor on the denominator: a 3-residue peptide is not "100 % identical" to a protein
    return same / max(min(len(a), len(b)), MIN_TM_RESIDUES)


def _preference(c):
    # X-ray with a known resolution first, then the better resolution, then the longer chain
    xray = bool(c.method and "X-RAY" in c.method)
    return (not xray, c.resolution if c.resolution else 99.0, -c.residues, c.key)


def deduplicate(chains, min_identity=DEDUP_IDENTITY):
    """Keep one chain per group of >= min_identity sequence identity.

    Returns (kept, dropped) with dropped = [(chain, representative, identity)]. The kept
    one is the preferred by X-ray/resolution/length (greedy, in that order).
    """
    kept, dropped, by_hash = [], [], {}
    for c in sorted(chains, key=_preference):
        rep = by_hash.get(c.sequence)
        ident = 1.0
        if rep is None:
            for k in kept:
                ident = sequence_identity(c.sequence, k.sequence)
                if ident >= min_identity:
                    rep = k
                    break
        if rep is None:
            kept.append(c)
            by_hash[c.sequence] = c
        else:
            dropped.append((c, rep, ident))
    return kept, dropped
