"""RELION's own relion_external_reconstruct, run on the (modified) inputs of one hook call.

Why: RELION's C++ reconstruction (FFTW, the code relion_refine itself runs) is 2-3x faster
and half as large in memory as the numpy re-implementation in reconstruct.py at boxes of
128-256 (issue 11). Update (17) only changes RELION's inputs, so both reconstructions the
hook needs can be handed to RELION's program (legitimate reuse of a real component):

  * x~ = B/K: the program with --no_map (RELION's ML reconstruction, same gridding);
  * the RED update: the program on B' = B + lambda F[f(x~)] / tau' (the numerator term of
    update (17), added on RELION's padded grid) and K, with RELION's MAP prior.

One difference is removed by the inputs too: relion_refine applies its prior only from
shell --minres_map (5) on, relion_external_reconstruct on every shell. The tau2 of the
shells below minres_map are written as NO_PRIOR_TAU2, so their prior term 1/(pad^3 fudge
tau2) is ~1e-31 of K: with lambda 0 the result is relion_refine's own reconstruction.

Every run is bounded (PROGRAM_TIMEOUT) and fails with RELION's message.
"""
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
from emtable import Table

from redprior.core.io.mrc import MapError, read_map, write_map

from .contract import ContractError

PROGRAM = "relion_external_reconstruct"
PROGRAM_TIMEOUT = 3600.0   # s; RELION's own call takes ~30 s at box 256 on one core
NO_PRIOR_TAU2 = 1e30       # tau2 that makes RELION's prior term vanish in a shell


def find_program():
    """relion_external_reconstruct of the RELION that runs us (its bin is on PATH when it
    calls the hook), else of $RELION_HOME/bin; None when there is none."""
    found = shutil.which(PROGRAM)
    if found:
        return found
    home = os.environ.get("RELION_HOME")
    cand = os.path.join(home, "bin", PROGRAM) if home else None
    return cand if cand and os.access(cand, os.X_OK) else None


def tau2_without_low_shells(tau2, minres_map):
    """RELION's tau2 with the shells below minres_map carrying no prior (see module doc)."""
    out = np.array(tau2, dtype=np.float64)
    out[:max(0, int(minres_map))] = NO_PRIOR_TAU2
    return out


def _write_star(job, star, data_real, data_imag, result, tau2):
    """A copy of RELION's STAR for this call pointing at our files, with our tau2.

    Written by hand, not by emtable: its writer rounds floats to 6 decimals, which turns
    RELION's tau2 (1e-6 and below at high resolution) into a different prior."""
    gen = Table(fileName=job.star, tableName="external_reconstruct_general")
    row = next(iter(gen))._asdict()
    row.update(rlnExtReconsDataReal=data_real, rlnExtReconsDataImag=data_imag,
               rlnExtReconsWeight=os.path.abspath(job.weight), rlnExtReconsResult=result)
    tt = Table(fileName=job.star, tableName="external_reconstruct_tau2")
    cols = tt.getColumnNames()
    lines = ["", "# version 30001", "", "data_external_reconstruct_general", ""]
    lines += [f"_{c} {_star_value(row[c])}" for c in gen.getColumnNames()]
    lines += ["", "# version 30001", "", "data_external_reconstruct_tau2", "", "loop_"]
    lines += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
    for i, r in enumerate(tt):
        values = r._asdict()
        values["rlnReferenceTau2"] = float(tau2[i])
        lines.append(" ".join(_star_value(values[c]) for c in cols))
    with open(star, "w") as fh:
        fh.write("\n".join(lines) + "\n\n")


def _star_value(v):
    return f"{v:.10e}" if isinstance(v, float) else str(v)


class RelionProgram:
    """relion_external_reconstruct for one hook call, in a private scratch folder next to
    RELION's result (same file system; removed by close())."""

    def __init__(self, job, minres_map, program=None, timeout=PROGRAM_TIMEOUT):
        self.job = job
        self.program = program or find_program()
        if not self.program:
            raise ContractError(f"{PROGRAM} was not found (PATH, $RELION_HOME/bin).")
        self.timeout = timeout
        self.tau2 = tau2_without_low_shells(job.tau2, minres_map)
        folder = os.path.dirname(os.path.abspath(job.result))
        self.scratch = tempfile.mkdtemp(prefix=".redprior_call_", dir=folder)
        self._runs = 0
        self.seconds = 0.0  # wall time inside RELION's program (the hook's log reports it)

    def _run(self, data=None, no_map=False):
        """The program's map for B (RELION's file, or data = B' as complex) and K."""
        self._runs += 1
        base = os.path.join(self.scratch, f"run{self._runs}")
        if data is None:
            real, imag = (os.path.abspath(p) for p in (self.job.data_real, self.job.data_imag))
        else:
            # the program finds the imaginary part by the name: <root>_real / <root>_imag
            real, imag = base + "_data_real.mrc", base + "_data_imag.mrc"
            write_map(real, np.ascontiguousarray(data.real, dtype=np.float32))
            write_map(imag, np.ascontiguousarray(data.imag, dtype=np.float32))
        star, result = base + ".star", base + "_result.mrc"
        _write_star(self.job, star, real, imag, result, self.tau2)
        cmd = [self.program, star] + (["--no_map"] if no_map else [])
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, cwd=self.scratch, capture_output=True, text=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            raise ContractError(f"{PROGRAM} did not finish within {self.timeout:g} s on "
                                f"{self.job.star}.") from exc
        finally:
            self.seconds += time.time() - t0
        if proc.returncode or not os.path.exists(result):
            tail = (proc.stdout + proc.stderr).strip()[-800:]
            raise ContractError(f"{PROGRAM} failed on {self.job.star} (exit "
                                f"{proc.returncode}): {tail}")
        try:
            vol, _ = read_map(result)
        except MapError as exc:
            raise ContractError(f"{PROGRAM} wrote an unusable map: {exc}") from exc
        # the scratch files go now (B' is as large as RELION's B); close() removes the rest
        for path in [result] + ([real, imag] if data is not None else []):
            os.remove(path)
        return np.asarray(vol, dtype=np.float32)

    def unregularised_map(self):
        """x~ = B/K (RELION's reconstruction without prior), the denoiser's input."""
        return self._run(no_map=True)

    def map_reconstruction(self, numerator=None):
        """RELION's MAP reconstruction of (B, or numerator = B', K) with relion_refine's
        minres_map."""
        return self._run(data=numerator)

    def close(self):
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
