"""The version of eegbench, in a module of its own so any module can read it without importing the public API."""

__version__ = "0.1.0"
