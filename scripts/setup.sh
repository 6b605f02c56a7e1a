#!/usr/bin/env bash
# Idempotent setup of a fresh Debian machine (run as root, or with sudo available):
# system packages only when something is missing, then ./venv with this package installed.
# Re-running it on a ready machine does nothing but quick checks.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}

log() { echo "[setup] $*"; }

# ---- system packages ------------------------------------------------------------------
missing=()
command -v relion_refine_mpi >/dev/null 2>&1 || [ -x "${RELION_HOME:-/nonexistent}/bin/relion_refine_mpi" ] \
    || missing+=(relion)
command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
command -v "$PY" >/dev/null 2>&1 || missing+=(python3)
"$PY" -c 'import tkinter' >/dev/null 2>&1 || missing+=(python3-tk)
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
    log "missing: ${missing[*]}"
    if ! command -v apt-get >/dev/null 2>&1; then
        log "ERROR: no apt-get here; install ${missing[*]} (RELION 3.1+, OpenMPI, Python 3 with tkinter and venv) yourself."
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "ERROR: need root (or sudo) to apt-get install ${missing[*]}"; exit 1; }
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # Install the whole set so versions match (relion pulls its MPI build).
    $SUDO apt-get install -y -qq relion openmpi-bin python3-tk python3-venv
else
    log "system packages present (relion, mpirun, $PY with tkinter and venv)"
fi

# ---- virtual environment ----------------------------------------------------------------
if [ ! -x venv/bin/python ]; then
    log "creating venv with $($PY --version 2>&1)"
    "$PY" -m venv venv
fi

# pyworkflow imports tkinter (pyworkflow.gui) even headless: the venv's Python must have it.
if ! venv/bin/python -c 'import tkinter' >/dev/null 2>&1; then
    log "ERROR: venv/bin/python ($(venv/bin/python --version 2>&1)) cannot import tkinter."
    log "  Debian python3: apt-get install python3-tk, then re-run this script."
    log "  pyenv/self-built Python: install tk-dev (libtk8.6) and rebuild that Python, then rm -rf venv and re-run."
    exit 1
fi

# Reinstall only when setup.py changed since the last successful install (or never ran).
stamp=venv/.redprior_setup_stamp
want=$(sha256sum setup.py | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && venv/bin/python -c 'import redprior, redprior_env, pwem, relion, pytest' >/dev/null 2>&1; then
    log "venv up to date ($REPO/venv)"
else
    log "installing redprior and its dependencies into venv (quiet; this takes a few minutes the first time)"
    # Full pip output goes to a log (build back-ends print pages of warnings even with -q);
    # it is shown only when the install fails.
    piplog=venv/pip-install.log
    if ! { venv/bin/python -m pip install -q --upgrade pip \
           && venv/bin/python -m pip install -q -e ".[test]"; } >"$piplog" 2>&1; then
        tail -n 40 "$piplog"
        log "ERROR: pip install failed; full log in $REPO/$piplog"
        exit 1
    fi
    echo "$want" > "$stamp"
fi

log "ready: RELION $(relion_refine --version 2>/dev/null | sed -n 's/.*RELION version: *\([^ ]*\).*/\1/p' | head -1 || true), $(venv/bin/python --version)"
