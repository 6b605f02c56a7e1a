"""A RELION refinement's output folder: its final files and where to continue from."""
import glob
import os
import re


def final_output(folder, suffix, root="run"):
    """RELION's final file (no _itNNN) of a refinement, e.g. 'class001.mrc', or None.

    After a continuation RELION writes under another root (run_ct5_...); the newest wins.
    """

    cands = [f for f in glob.glob(os.path.join(folder, f"{root}*_{suffix}"))
             if "_it" not in os.path.basename(f)]
    return max(cands, key=os.path.getmtime) if cands else None


def last_optimiser(folder, root="run"):
    """(path, iteration) of the newest *_itNNN_optimiser.star of an unfinished refinement.

    None when nothing was written yet or the refinement already finished.
    """

    files = glob.glob(os.path.join(folder, f"{root}*_it[0-9][0-9][0-9]_optimiser.star"))
    if not files or final_output(folder, "class001.mrc", root):
        return None
    best = max(files, key=lambda f: (int(re.search(r"_it(\d{3})_optimiser", f).group(1)),
                                     os.path.getmtime(f)))
    return best, int(re.search(r"_it(\d{3})_optimiser", best).group(1))


