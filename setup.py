"""Installs igr_tf (the library) and models (Keras VAE and SOP); metadata lives in setup.cfg."""

from setuptools import setup

setup()
