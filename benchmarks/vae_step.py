"""Training-step time of DiscreteVAE per relaxation, as ratios to GS and to a plain autoencoder.

DiscreteVAE, nonlinear architecture (784-512-256-(20x10)-256-512-784), batch 100, V = 20, K = 10,
Adam, on one fixed batch of `igr_tf.datasets.load("mnist_sample")`. The baseline "ae" is the same
network with a deterministic bottleneck: a Dense of width V*K, softmax per variable, no noise and
no KL (defined below). Its ratio is the whole overhead of a relaxation (limit 1.0). Each model's
`train_step` is wrapped in a tf.function with jit_compile False, then True (the model is compiled
with the same flag); contenders interleaved round by round (see _common).

    python benchmarks/vae_step.py [--quick] [--rounds R] [--calls C] [--threads T]
"""

from __future__ import annotations

import sys

import _common

# The temperatures the paper cross-validated (SPEC §5); cost does not depend on them.
from igr_tf.paper import VAE_TEMPERATURE as TEMPERATURES

NAMES = ("gs", "igr_i", "igr_sb", "igr_planar")
BATCH, NUM_VARS, NUM_CATEGORIES = 100, 20, 10


def autoencoder_class():
    """The deterministic baseline, built on first use (imports Keras lazily)."""
    import keras
    import tensorflow as tf

    from models.vae import ARCHITECTURES, LIKELIHOODS

    class SoftmaxAutoencoder(keras.Model):
        """DiscreteVAE's network with the latent replaced by softmax(Dense(V*K)) per variable."""

        def __init__(
            self,
            num_vars=NUM_VARS,
            num_categories=NUM_CATEGORIES,
            arch="nonlinear",
            image_shape=(28, 28, 1),
            **kwargs,
        ):
            super().__init__(**kwargs)
            self.num_vars, self.num_categories = num_vars, num_categories
            encoder_body, decoder_body = ARCHITECTURES[arch]
            _, self._log_prob = LIKELIHOODS["bernoulli"]
            self.encoder = keras.Sequential(
                [
                    keras.layers.Flatten(),
                    *encoder_body(),
                    keras.layers.Dense(num_vars * num_categories),
                ],
                name="encoder",
            )
            self.decoder = keras.Sequential(
                [
                    keras.layers.Flatten(),
                    *decoder_body(image_shape),
                    keras.layers.Dense(int(image_shape[0] * image_shape[1] * image_shape[2])),
                ],
                name="decoder",
            )
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.encoder.build((None, *image_shape))
            self.decoder.build((None, num_vars, num_categories))

        @property
        def metrics(self):
            return [self.loss_tracker]

        def call(self, x, training=None):
            h = self.encoder(x, training=training)
            latent = tf.nn.softmax(tf.reshape(h, [-1, self.num_vars, self.num_categories]), -1)
            return self.decoder(latent, training=training)

        def train_step(self, data):
            x = data[0] if isinstance(data, tuple) else data
            with tf.GradientTape() as tape:
                out = self(x, training=True)
                loss = tf.reduce_mean(-self._log_prob(tf.reshape(x, [tf.shape(x)[0], -1]), out))
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    return SoftmaxAutoencoder


def fixed_batch():
    import tensorflow as tf

    from igr_tf import datasets

    data = datasets.load("mnist_sample")
    x = next(iter(data.train.batch(BATCH, drop_remainder=True)))
    return tf.convert_to_tensor(x)


def make_step(name: str, jit_compile: bool, x):
    """A zero-argument tf.function running one `train_step` of the model `name` on `x`."""
    import keras
    import tensorflow as tf

    from models.vae import DiscreteVAE

    if name == "ae":
        model = autoencoder_class()()
    else:
        model = DiscreteVAE(
            name, NUM_VARS, NUM_CATEGORIES, TEMPERATURES[name], arch="nonlinear", seed=1
        )
    model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit_compile)
    model.optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def step():
        return model.train_step(x)

    return step


def run(quick: bool = False, rounds: int | None = None, calls: int | None = None) -> str:
    rounds = rounds or (2 if quick else 15)
    calls = calls or (2 if quick else 10)
    x = fixed_batch()
    header = [
        "model",
        "jit_compile",
        "CPU ms/step",
        "CPU ratio to gs [IQR]",
        "CPU ratio to ae [IQR]",
        "wall ratio to gs [IQR]",
        "wall ratio to ae [IQR]",
    ]
    rows = []
    # --quick skips XLA: compiling every contender alone takes longer than the smoke budget.
    for jit in (False,) if quick else (False, True):
        steps = {name: make_step(name, jit, x) for name in ("ae", *NAMES)}
        times = _common.interleaved_times(steps, rounds=rounds, calls_per_round=calls)
        stats = {
            (clock, ref): _common.ratio_stats(times[clock], ref)
            for clock in ("cpu", "wall")
            for ref in ("gs", "ae")
        }
        for name in ("ae", *NAMES):
            rows.append(
                [
                    name,
                    jit,
                    f"{stats['cpu', 'gs'][name]['us'] / 1e3:.2f}",
                    *(
                        _common.fmt_ratio(stats[clock, ref][name])
                        for clock in ("cpu", "wall")
                        for ref in ("gs", "ae")
                    ),
                ]
            )
    description = (
        f"DiscreteVAE train_step, nonlinear arch, batch {BATCH}, V={NUM_VARS}, "
        f"K={NUM_CATEGORIES}, Adam, fixed mnist_sample batch; ae = same network with a "
        f"deterministic softmax bottleneck; {rounds} interleaved rounds × {calls} calls; "
        f"ratios are medians of per-round ratios [25th, 75th percentile]."
    )
    return _common.report(description, header, rows)


def main(argv=None) -> str:
    return _common.main(run, __doc__, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
