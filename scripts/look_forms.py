"""Screenshots of what a Scipion user sees, for a person to look at (run under Xvfb):

    xvfb-run -s "-screen 0 1400x1000x24" venv/bin/python scripts/look_forms.py OUT_FOLDER

Writes a PNG of each redprior protocol's form (every section), so labels, units (Å) and help
can be checked by eye; scripts/look_reports.sh renders the reports. Needs a display (Xvfb).
"""
import os
import sys

import redprior_env

redprior_env.setup_environment(os.path.join(os.path.abspath(sys.argv[1]), "scipion"))


def main(out):
    from PIL import ImageGrab
    import pyworkflow.gui.project  # noqa: F401  (imports gui.form in the order it needs)
    from pyworkflow.gui.form import FormWindow
    from pyworkflow.project import Manager

    import redprior.protocols as P

    manager = Manager()
    name = "redprior_look"
    if manager.hasProject(name):
        manager.deleteProject(name)  # this script's own scratch project
    project = manager.createProject(name)
    shots = []
    for cls in (P.ProtRedPriorSimulate, P.ProtRedPriorRefine, P.ProtRedPriorValidate,
                P.ProtRedPriorConsensus, P.ProtRedPriorTrainingMaps,
                P.ProtRedPriorTrainDenoiser, P.ProtRedPriorBiasTest):
        prot = project.newProtocol(cls)
        win = FormWindow(cls._label, prot, lambda *a, **k: None)
        win.root.deiconify()
        win.root.geometry("1000x900+0+0")
        for _ in range(20):
            win.root.update()
        from tkinter import ttk
        notebook = next((w for w in _walk(win.root) if isinstance(w, ttk.Notebook)), None)
        tabs = notebook.tabs() if notebook is not None else [None]
        for i, tab in enumerate(tabs):
            if tab is not None:
                notebook.select(tab)
            for _ in range(5):
                win.root.update()
            x, y = win.root.winfo_rootx(), win.root.winfo_rooty()
            w, h = win.root.winfo_width(), win.root.winfo_height()
            path = os.path.join(out, "form_%s_%d.png" % (cls.__name__, i))
            ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=os.environ.get("DISPLAY")).save(path)
            shots.append(path)
        win.root.destroy()
    print("\n".join(shots))


def _walk(widget):
    yield widget
    for child in widget.winfo_children():
        yield from _walk(child)


if __name__ == "__main__":
    os.makedirs(sys.argv[1], exist_ok=True)
    main(os.path.abspath(sys.argv[1]))
