"""napari docks of napari-pvm (the only package that imports napari and Qt)."""
