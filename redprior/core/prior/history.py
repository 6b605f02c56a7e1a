"""The hook's log: one JSON line per RELION call (iteration, half, resolution, lambda, time),
and the summary of a finished refinement built from it and RELION's final files.
"""
import fcntl
import json
import os

from emtable import Table

from redprior.core.relion.run_folder import final_output

LOG_HEADER = "# redprior external reconstruct log: one line per RELION call\n"


def append_log(path, record):
    """One JSON line per call; the lock keeps the two halves' lines whole."""
    if not path:
        return
    new = not os.path.exists(path)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if new:
            fh.write(LOG_HEADER)
        fh.write(json.dumps(record) + "\n")
        fcntl.flock(fh, fcntl.LOCK_UN)


def read_log(path):
    """The records of a log written by append_log (for protocols and viewers)."""
    out = []
    if path and os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                if line.strip() and not line.startswith("#"):
                    out.append(json.loads(line))
    return out


def history_rows(log):
    """[iteration, half, schedule resolution (A), lambda] per successful hook call: a
    summary's lambda_history."""
    return [[r["iteration"], r["half"], r["resolution"], r["lambda"]]
            for r in log if "error" not in r]


def schedule_history(rows):
    """[(iteration, schedule resolution A, lambda)] per iteration from history_rows(): the
    mean over the halves of the resolution lambda was computed from and of lambda (the one
    series the viewer, the summary and the demo page show; NaN where none was read)."""
    out = []
    for it in sorted({r[0] for r in rows}):
        calls = [r for r in rows if r[0] == it]
        res = [r[2] for r in calls if r[2] is not None]
        out.append((it, sum(res) / len(res) if res else float("nan"),
                    sum(r[3] for r in calls) / len(calls)))
    return out


def prior_caution(rows):
    """What a user must know before quoting the resolution of a refinement in which a learned
    prior acted (lambda > 0 in some call of history_rows()), else None: the two half-maps were
    aligned to references shaped by the same denoiser, so their FSC is no longer independent
    (the quality benchmark, README "Benchmarks", measured masked half-map claims up to 7 shells
    beyond the FSC to the truth at 0.5 where the map itself was much better than plain
    RELION's)."""
    top = max((r[3] for r in rows), default=0.0)
    if not top > 0:
        return None
    return ("A learned prior acted (lambda up to %.2f): both half-maps were aligned to references "
            "shaped by the same denoiser, so their FSC is not independent and can claim more "
            "than the map holds. Check the resolution with 'resolution and validation report' "
            "against a reference or an independent map before quoting it." % top)


def final_fsc(folder):
    """(resolution per shell in 1/A, RELION's gold-standard FSC) of a finished refinement."""
    t = Table(fileName=final_output(folder, "model.star"), tableName="model_class_1")
    return (list(map(float, t.getColumnValues("rlnResolution"))),
            list(map(float, t.getColumnValues("rlnGoldStandardFsc"))))


def refinement_summary(folder, log_path, method, seconds, denoiser):
    """The summary of a finished refinement in `folder` (RELION's run_* files).

    relion_final_resolution is RELION's own final estimate (unmasked half-map FSC at 0.143,
    model.star rlnCurrentResolution); lambda_history holds one [iteration, half, schedule
    resolution (A), lambda] per hook call, the resolution being the one lambda was computed
    from (core.prior.exrecon).
    """
    row = next(iter(Table(fileName=final_output(folder, "model.star"),
                          tableName="model_general")))
    log = [r for r in read_log(log_path) if "error" not in r]
    lambda_rows = history_rows(log)
    return {
        "method": method,
        "final_resolution": float(row.rlnCurrentResolution),
        "final_resolution_what": "RELION's final estimate: unmasked half-map FSC at 0.143",
        "iterations": len({r["iteration"] for r in log}),
        "wall_seconds": round(seconds, 1),
        "calls": len(log),
        "lambda_history": lambda_rows,
        "resolution_caution": prior_caution(lambda_rows),
        "denoiser": denoiser,
    }
