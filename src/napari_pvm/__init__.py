"""napari-pvm: paravertebral muscle area and fat infiltration on lumbar MRI.

Importing the package never imports napari or Qt; the widgets live in the
private ``napari_pvm._widgets`` package and are loaded by napari through the
npe2 manifest.
"""

from ._version import __version__

__all__ = ["__version__"]
