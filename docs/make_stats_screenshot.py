"""Regenerate docs/images/stats-dock.png: the Statistics dock with the cohort analysed.

Taken from a real napari window, on a virtual screen when there is no display:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_stats_screenshot.py

The dock is driven through the same methods its buttons call. The cohort is
the synthetic table of tests/data (no patient data).
"""

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COHORT = HERE.parent / "tests" / "data" / "paper_table2_cohort.csv"
OUT = HERE / "images" / "stats-dock.png"
LOGISTIC = [
    "fascia_injury",
    "vbq",
    "kyphosis_post",
    "cement_diffused",
    "ps_muscle_area",
    "ps_total_area",
    "esmf_fi_pct",
]
ROC = ["ps_total_area", "esmf_fi_pct"]


def settle(app, seconds=0.5):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main(tab="ROC", out=OUT):
    out = Path(out)
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_pvm._widgets.stats_widget import StatsWidget

    viewer = napari.Viewer(title="napari-pvm")
    viewer.window._qt_window.resize(1600, 1000)
    app = QApplication.instance()
    viewer.open_sample("napari-pvm", "phantom")
    dock = StatsWidget(viewer)
    dock.notify = lambda message, level="info": print(f"[{level}] {message}")
    viewer.window.add_dock_widget(dock, name="Statistics", area="right")
    dock.setMinimumWidth(720)
    import os

    os.chdir(HERE.parent)  # show a path relative to the repository, not this machine's
    dock.load_table(COHORT.relative_to(HERE.parent))
    for name in LOGISTIC:
        dock.grid.set(name, logistic=True)
    for name in ROC:
        dock.grid.set(name, roc=True)
    dock.run()
    start = time.monotonic()
    while dock._worker is not None:
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > 120:
            raise TimeoutError("the analysis did not finish")
    dock.results.show_tab(tab)
    settle(app, 1.0)
    out.parent.mkdir(exist_ok=True)
    viewer.window._qt_window.grab().save(str(out))
    print("wrote", out)
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
