"""Keras models with discrete latent variables: the discrete VAE and the SOP network."""
