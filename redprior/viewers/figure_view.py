"""A matplotlib figure as a pyworkflow view: pyworkflow calls show() once, and the figure
is shown without blocking (showing it here as well and returning it made pyworkflow show it a
second time, and closing it raised Tk's TclError)."""


class FigureView:
    def __init__(self, fig):
        self.fig = fig

    def show(self):
        import matplotlib.pyplot as plt
        plt.show(block=False)
