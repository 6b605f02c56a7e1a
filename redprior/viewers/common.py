"""Helpers shared by the viewers."""
import os


def savePlotters(folder, items, dpi=100):
    """Save the EmPlotters that each (name, function) of `items` returns as <name>.png.

    Lets every viewer write its figures without a display; returns the paths written.
    """
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, func in items:
        for plotter in func():
            path = os.path.join(folder, name + '.png')
            plotter.savefig(path, dpi=dpi)
            plotter.close()
            paths.append(path)
    return paths
