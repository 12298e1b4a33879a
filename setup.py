"""Only wires the cffi build of the TinyEngine C kernels; metadata is in setup.cfg."""
from setuptools import setup

setup(cffi_modules=["jaxtiny/tinyengine/build_ckernels.py:ffibuilder"])
