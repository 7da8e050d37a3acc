"""igr_tf: Invertible Gaussian Reparameterization for TensorFlow, TFP and Keras.

`import igr_tf` stays light (no TensorFlow import) so command-line tools can parse flags fast;
`igr_tf.relaxed_one_hot` imports the library on first use.
"""

__version__ = "0.1.0"
__all__ = ["relaxed_one_hot"]


def __getattr__(name: str):
    if name == "relaxed_one_hot":
        from igr_tf.functional import relaxed_one_hot

        return relaxed_one_hot
    raise AttributeError(f"module 'igr_tf' has no attribute {name!r}")
