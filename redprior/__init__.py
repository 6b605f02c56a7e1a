"""scipion-em-redprior: learned (RED / CW-RED) priors for RELION 3D auto-refine.

Implements Kimanius et al. (2021) regularisation by denoising inside RELION's
--external_reconstruct hook, plus the simulation, training and validation around it.
"""
import os
import re
import shutil
import subprocess
import sys
from importlib.util import find_spec

__version__ = '0.1.0'  # keep equal to VERSION in setup.py
_logo = 'redprior_logo.png'
_references = ['Kimanius2021']

# RELION's external-reconstruct hook (redprior_exrecon) only needs the numpy core: with
# REDPRIOR_CORE_ONLY=1 we skip importing Scipion (pwem), which costs seconds per call and
# needs Scipion's settings. Scipion itself never sets it, so the plugin is always defined there.
CORE_ONLY = os.environ.get('REDPRIOR_CORE_ONLY', '') not in ('', '0')

if not CORE_ONLY:
    import pwem
    import pyworkflow as pw
    import pyworkflow.utils as pwutils

    from .constants import (RELION_HOME, RELION_REFINE, RELION_REFINE_MPI,
                            RELION_REQUIRED_PROGRAMS, RELION_INSTALL_HINT)

    class Plugin(pwem.Plugin):
        # No _homeVar and no _pathVars: a missing path listed there fails *every* run (even
        # the pure-Python simulate protocol), and RELION may come from PATH, not a home folder.
        _homeVar = ''
        _pathVars = []
        _supportedVersions = []
        _url = 'https://github.com/scipion-em/scipion-em-redprior'
        _relionVersionCache = {}

        @classmethod
        def _defineVariables(cls):
            # RELION_HOME is deliberately not registered with _defineVar: Plugin._vars is one
            # dict shared by all plugins, and scipion-em-relion stores its own default there
            # ($EM_ROOT/relion-5.0). We read the environment directly instead.
            pass

        # ---------------------------------------------------------------- RELION
        @classmethod
        def _relionHomeFromEnv(cls):
            """RELION's home as scipion-em-relion finds it: $RELION_HOME (a relative path, as
            `scipion config` writes, is relative to SCIPION_HOME, like pwem's own variables),
            else the folder where Scipion's installer puts RELION (EM_ROOT/relion-5.0) if RELION
            is there; None to look on PATH."""
            home = os.environ.get(RELION_HOME, '').strip()
            if home:
                home = os.path.expanduser(home)
                if not os.path.isabs(home):
                    home = os.path.join(pw.Config.SCIPION_HOME, home)
                return os.path.abspath(home)
            installed = os.path.join(pw.Config.SCIPION_HOME, pwem.Config.EM_ROOT, 'relion-5.0')
            if os.path.isfile(os.path.join(installed, 'bin', RELION_REFINE_MPI)):
                return os.path.abspath(installed)
            return None

        @classmethod
        def getRelionHome(cls):
            """RELION's home folder (see _relionHomeFromEnv), else the parent of the folder
            holding relion_refine_mpi on PATH; None when RELION is not found."""
            home = cls._relionHomeFromEnv()
            if home:
                return home
            prog = shutil.which(RELION_REFINE_MPI)
            return os.path.dirname(os.path.dirname(os.path.realpath(prog))) if prog else None

        @classmethod
        def getRelionProgram(cls, name):
            """Absolute path of a RELION program, or None.

            With RELION_HOME set only $RELION_HOME/bin is searched: silently falling back to
            another RELION on PATH would mix versions without the user knowing.
            """
            home = cls._relionHomeFromEnv()
            if home:
                path = os.path.join(home, 'bin', name)
                return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
            found = shutil.which(name)
            return os.path.abspath(found) if found else None

        @classmethod
        def getRelionVersion(cls):
            """RELION version string such as '3.1.3' (from `relion_refine --version`), '' if
            unknown. Cached per program path."""
            prog = cls.getRelionProgram(RELION_REFINE) or cls.getRelionProgram(RELION_REFINE_MPI)
            if prog is None:
                return ''
            if prog not in cls._relionVersionCache:
                version = ''
                try:
                    out = subprocess.run([prog, '--version'], capture_output=True, text=True,
                                         timeout=60, env=cls.getEnviron())
                    match = re.search(r'RELION version:\s*([0-9][0-9A-Za-z.\-]*)',
                                      out.stdout + out.stderr)
                    if match:
                        version = match.group(1).rstrip('.-')
                except (OSError, subprocess.SubprocessError):
                    pass
                cls._relionVersionCache[prog] = version
            return cls._relionVersionCache[prog]

        @classmethod
        def getMpirun(cls):
            """Absolute path of mpirun: RELION's bin first (a RELION built against its own MPI),
            then PATH, then Scipion's MPI_BINDIR; None if not found."""
            path = os.pathsep.join(p for p in [cls._relionBin(), os.environ.get('PATH', ''),
                                               pwem.Config.MPI_BINDIR] if p)
            found = shutil.which('mpirun', path=path)
            return os.path.abspath(found) if found else None

        @classmethod
        def _relionBin(cls):
            prog = cls.getRelionProgram(RELION_REFINE_MPI) or cls.getRelionProgram(RELION_REFINE)
            if prog:
                return os.path.dirname(prog)
            home = cls._relionHomeFromEnv()
            return os.path.join(home, 'bin') if home else None

        @classmethod
        def getEnviron(cls):
            """Environment for RELION jobs: RELION's bin (and lib) first on PATH."""
            environ = pwutils.Environ(os.environ)
            relionBin = cls._relionBin()
            if relionBin:
                environ.update({'PATH': relionBin}, position=pwutils.Environ.BEGIN)
                relionLib = os.path.join(os.path.dirname(relionBin), 'lib')
                if os.path.isdir(relionLib) and relionLib != '/usr/lib':
                    environ.update({'LD_LIBRARY_PATH': relionLib}, position=pwutils.Environ.BEGIN)
            if hasattr(os, 'geteuid') and os.geteuid() == 0:
                # OpenMPI refuses to run as root (containers) unless told it is intended.
                environ.setdefault('OMPI_ALLOW_RUN_AS_ROOT', '1')
                environ.setdefault('OMPI_ALLOW_RUN_AS_ROOT_CONFIRM', '1')
            return environ

        @classmethod
        def validateInstallation(cls):
            """List of messages naming what is missing and how to install it ([] if fine)."""
            errors = []
            home = cls._relionHomeFromEnv()
            where = (f"not found in RELION_HOME={home} (expected {home}/bin/<program>)"
                     if home else "not found on PATH")
            for prog in RELION_REQUIRED_PROGRAMS:
                if cls.getRelionProgram(prog) is None:
                    errors.append(f"{prog} {where}: {RELION_INSTALL_HINT}.")
            if cls.getMpirun() is None:
                errors.append("mpirun not found (needed by relion_refine_mpi): install OpenMPI "
                              "(Debian: apt-get install openmpi-bin) or put mpirun on PATH.")
            return errors + cls.missingPythonPackages('tensorflow')

        @classmethod
        def missingPythonPackages(cls, *modules):
            """Messages for the Python modules not importable here (protocols that need no
            RELION use this as their whole installation check)."""
            pipName = {'tensorflow': 'tensorflow-cpu` (or tensorflow for GPUs'}
            return ["Python package %s is not installed in this Python (%s): run `%s -m pip "
                    "install %s`." % (mod, sys.executable, sys.executable, pipName.get(mod, mod))
                    for mod in modules if find_spec(mod) is None]

        # ---------------------------------------------------------------- templates
        TEMPLATE_DATA_TOKEN = '@REDPRIOR_DATA@'

        def getTemplates(self):
            """Workflow templates in redprior/templates (found by pyworkflow's Plugin), with
            TEMPLATE_DATA_TOKEN replaced by this installation's redprior/data folder, so the
            shipped model is the default input wherever the plugin is installed."""
            import json
            data = os.path.join(self.getPath(), 'data')
            # JSON-escaped, and '%' doubled: pyworkflow formats the content with os.environ
            escaped = json.dumps(data)[1:-1].replace('%', '%%')
            templates = super().getTemplates()
            for template in templates:
                template.content = template.content.replace(self.TEMPLATE_DATA_TOKEN, escaped)
            return templates

        @classmethod
        def defineBinaries(cls, env):
            # Nothing to install through `scipion installb`: RELION comes from the system
            # (e.g. Debian's relion package) or from scipion-em-relion, and TensorFlow is an
            # ordinary pip dependency of this package (install_requires).
            pass

