"""Installs igr_tf (the library) and models (the Keras VAE and SOP models); metadata is in setup.cfg."""

from setuptools import setup

setup()
