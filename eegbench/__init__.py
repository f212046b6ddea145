"""eegbench: an honest, reproducible benchmark for decoding seen images from EEG and MEG."""

from eegbench._compat import install_import_hook

install_import_hook()

__version__ = "0.1.0"
