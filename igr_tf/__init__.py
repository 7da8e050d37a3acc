"""igr_tf: Invertible Gaussian Reparameterization for TensorFlow, TFP and Keras."""

__version__ = "0.1.0"
