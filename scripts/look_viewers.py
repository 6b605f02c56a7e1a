"""Screenshots of every redprior viewer on a finished project, for a person to look at:

    xvfb-run -a -s "-screen 0 1400x1000x24" venv/bin/python scripts/look_viewers.py \
        SCIPION_ROOT PROJECT OUT_FOLDER

SCIPION_ROOT is the folder the demo was given (`--root`; it holds ScipionUserData/), PROJECT
the project's name (e.g. redprior_demo). For each finished run, each redprior viewer and each
of its views, the view is opened as pyworkflow opens it (show(), Tk backend, on the Xvfb
display), the screen is grabbed into OUT_FOLDER/<run>_<view>.png, and the window is closed
as a user closes it; any exception on opening or closing (e.g. Tk's TclError) is printed.
"""
import os
import sys
import traceback

import redprior_env

redprior_env.setup_environment(os.path.abspath(sys.argv[1]))


def main(project_name, out):
    import matplotlib.pyplot as plt
    from PIL import ImageGrab
    from pyworkflow.gui.plotter import Plotter
    from pyworkflow.project import Manager

    Plotter.setBackend("TkAgg")  # what Scipion's project window does before any viewer

    import redprior.viewers as V
    from redprior.viewers.figure_view import FigureView

    os.makedirs(out, exist_ok=True)
    project = Manager().loadProject(project_name)
    viewers = [getattr(V, n) for n in dir(V) if n.endswith("Viewer")]
    problems = 0
    for prot in project.getRuns():
        if not prot.isFinished():
            continue
        for cls in viewers:
            if not any(isinstance(prot, t) for t in getattr(cls, "_targets", [])):
                continue
            viewer = cls(project=project, protocol=prot)
            for key, func in viewer._getVisualizeDict().items():
                name = f"{prot.getObjId()}_{type(prot).__name__}_{key}"
                try:
                    views = func(key)  # pyworkflow passes the parameter's name
                    for i, view in enumerate(views or []):
                        fig = getattr(view, "fig", None) or getattr(view, "figure", None)
                        if isinstance(view, FigureView) or fig is not None:
                            view.show()
                            for _ in range(5):
                                plt.pause(0.2)
                            path = os.path.join(out, f"{name}_{i}.png")
                            ImageGrab.grab().save(path)
                            plt.close(fig)  # as the user closing the window
                            print("wrote", path)
                        else:
                            print(f"{name}: {type(view).__name__} (not a figure; not grabbed)")
                except Exception:
                    problems += 1
                    print(f"PROBLEM in {name}:\n{traceback.format_exc()}")
    print(f"{problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[2], sys.argv[3]))
