"""eegbench: an honest, reproducible benchmark for decoding seen images from EEG and MEG."""

from eegbench._compat import install_import_hook
from eegbench._version import __version__

install_import_hook()

__all__ = ["__version__"]
