"""Environment for running Scipion (pyworkflow/pwem) headless with a pip-only install.

pyworkflow.Config reads its settings from environment variables once, when pyworkflow is
first imported, so `setup_environment()` must run before anything imports pyworkflow, pwem
or redprior. It only sets variables that are not set yet (os.environ.setdefault), so a user's
own Scipion configuration always wins.

Used by the root conftest.py (pytest), the demo launcher and `python -m redprior_env`
(prints `export ...` lines for `scipion test` / `python -m unittest`).
"""
import os
import sys
import tempfile
import warnings

# No queue system: only [localhost] and PARALLEL_COMMAND are required by pyworkflow's
# hosts parser; the queue keys (SUBMIT_COMMAND, ...) are only read when NAME is set, and a
# NAME would make the GUI offer a queue that does not exist here.
HOSTS_CONF = """; Written by redprior_env.setup_environment(): local execution only.
; For a cluster, point SCIPION_HOSTS to your own hosts.conf (see Scipion's hosts.template).
[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s
"""

DEFAULT_ROOT_NAME = "redprior-scipion"


def default_root():
    return os.environ.get("REDPRIOR_SCIPION_ROOT") or os.path.join(
        tempfile.gettempdir(), DEFAULT_ROOT_NAME)


def setup_environment(root=None):
    """Set (setdefault) every variable Scipion needs headless; return {name: value} used.

    root: folder holding scipion_home/, ScipionUserData/ and tests/ (created).
    Default: $REDPRIOR_SCIPION_ROOT or <tmp>/redprior-scipion.
    """
    if "pyworkflow" in sys.modules:
        # Config has already read the environment: our defaults would be ignored.
        warnings.warn("redprior_env.setup_environment() called after pyworkflow was imported; "
                      "Scipion settings made now may not take effect.", RuntimeWarning)
    root = os.path.abspath(root or default_root())
    env = os.environ

    env.setdefault("SCIPION_DOMAIN", "pwem")
    # The default SCIPION_HOME is the cwd at import time, which differs between the test
    # process and the protocol subprocess: always pin it.
    env.setdefault("SCIPION_HOME", os.path.join(root, "scipion_home"))
    os.makedirs(env["SCIPION_HOME"], exist_ok=True)

    hosts = env.setdefault("SCIPION_HOSTS",
                           os.path.join(env["SCIPION_HOME"], "config", "hosts.conf"))
    if not os.path.exists(hosts):
        # A missing hosts file makes pyworkflow sys.exit() with one line.
        os.makedirs(os.path.dirname(hosts), exist_ok=True)
        with open(hosts, "w") as fh:
            fh.write(HOSTS_CONF)

    env.setdefault("SCIPION_USER_DATA", os.path.join(root, "ScipionUserData"))
    env.setdefault("SCIPION_TESTS", os.path.join(root, "tests"))
    for key in ("SCIPION_USER_DATA", "SCIPION_TESTS"):
        os.makedirs(env[key], exist_ok=True)
    env.setdefault("SCIPION_TEST_NOSYNC", "1")   # no test-data download (offline machines)
    env.setdefault("SCIPION_NOTIFY", "False")    # no usage statistics
    # Protocols run in a subprocess with $SCIPION_PYTHON; without it a non-activated venv
    # fails there with "No module named pyworkflow".
    env.setdefault("SCIPION_PYTHON", sys.executable)
    env.setdefault("NO_COLOR", "1")              # plain error messages, no ANSI codes
    env.setdefault("MPLBACKEND", "Agg")          # no display needed

    # RELION_HOME is left as it is: setting it would also point scipion-em-relion at
    # whatever RELION we chose. redprior finds RELION as scipion-em-relion does, then on PATH.
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # OpenMPI refuses to start as root (containers, CI) without these.
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # relion_refine_mpi needs >= 3 ranks (1 master + 2 halves); allow it on small machines.
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")

    names = ["SCIPION_DOMAIN", "SCIPION_HOME", "SCIPION_HOSTS", "SCIPION_USER_DATA",
             "SCIPION_TESTS", "SCIPION_TEST_NOSYNC", "SCIPION_NOTIFY", "SCIPION_PYTHON",
             "NO_COLOR", "MPLBACKEND", "RELION_HOME", "OMPI_ALLOW_RUN_AS_ROOT",
             "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "OMPI_MCA_rmaps_base_oversubscribe"]
    return {k: env[k] for k in names if k in env}


def export_lines(values):
    """Shell `export` lines for the given {name: value}."""
    import shlex
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in values.items())


def user_root():
    """Where the demo keeps its Scipion data: $REDPRIOR_SCIPION_ROOT or ./.redprior_scipion.

    `redprior_demo` and `python -m redprior_env` (for the GUI and `scipion3 test`) use the
    same one, so the GUI opened from the same folder lists the demo's project."""
    return os.environ.get("REDPRIOR_SCIPION_ROOT") or os.path.join(os.getcwd(),
                                                                    ".redprior_scipion")


def main(argv=None):
    """`eval "$(python -m redprior_env)"` sets the demo's environment in a shell."""
    argv = sys.argv[1:] if argv is None else argv
    values = setup_environment(argv[0] if argv else user_root())
    # `scipion test` also needs the venv's bin on PATH (it runs `python` from PATH).
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        values["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    print(export_lines(values))


if __name__ == "__main__":
    main()


def demo_main(argv=None):
    """`redprior_demo`: set up Scipion's environment, then run the demo workflow."""
    setup_environment(user_root())
    from redprior.demo import main as run_demo

    return run_demo(argv)
