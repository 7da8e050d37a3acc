"""`RBM`: a restricted Boltzmann machine prior as a serializable Keras layer.

```python
prior = igr_tf.boltzmann.RBM(20, 20)          # n1 + n2 = 40 binary units, trainable a, b, W
e = prior(z)                                   # E(z) [...] for z [..., 40] in [0, 1]
prior.log_partition_exact()                    # log Z by summing one group out (m ≤ 24)
prior.log_partition_ais(seed=(0, 1))           # AISResult(log_z, stderr, log_weights)
```

Training an RBM prior needs `∇ log Z = E_p[−∇E]` (for `log p(z) = −E(z) − log Z`), estimated
from persistent chains (PCD, Tieleman 2008): non-trainable state that `advance_chains()` moves by
block Gibbs sweeps under the current parameters, and `log_partition_surrogate()`, a term whose
value is 0 and whose gradient is that estimate. With `coupled=False` the layer is the factorial
Bernoulli model of the same size (no couplings), whose `log Z` is exact and cheap.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from igr_tf._checks import check_positive_int
from igr_tf._seed_state import SavesSeedState
from igr_tf.boltzmann import rbm, sampling
from igr_tf.boltzmann.ais import AISResult, ais_log_partition

__all__ = ["RBM"]


@keras.saving.register_keras_serializable(package="igr_tf")
class RBM(SavesSeedState, keras.layers.Layer):
    """Bipartite BM over `n1 + n2` binary units: `E(z) = −aᵀz1 − bᵀz2 − z1ᵀWz2`, `z = [z1, z2]`.

    Args:
      num_units1, num_units2: the group sizes n1 and n2 (a latent vector is `[z1, z2]`).
      coupled: with False, the factorial Bernoulli model (W = 0, only the biases are weights).
      num_chains: persistent Gibbs chains for the `log Z` gradient (coupled models only).
      gibbs_steps: block Gibbs sweeps per `advance_chains()` call.
      coupling_stddev: couplings start as `N(0, coupling_stddev²)`; biases start at 0.
      seed: seed of the chains' random stream.

    Calling the layer on `z` `[..., n1 + n2]` (binary or relaxed in `[0, 1]`) returns `E(z)`.
    """

    def __init__(
        self,
        num_units1: int = 20,
        num_units2: int = 20,
        *,
        coupled: bool = True,
        num_chains: int = 100,
        gibbs_steps: int = 1,
        coupling_stddev: float = 0.01,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_units1 = check_positive_int(num_units1, "num_units1")
        self.num_units2 = check_positive_int(num_units2, "num_units2")
        self.coupled = bool(coupled)
        self.num_chains = check_positive_int(num_chains, "num_chains")
        self.gibbs_steps = check_positive_int(gibbs_steps, "gibbs_steps")
        if not coupling_stddev >= 0:
            raise ValueError(f"`coupling_stddev` must be >= 0; got {coupling_stddev}.")
        self.coupling_stddev = float(coupling_stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        n1, n2 = self.num_units1, self.num_units2
        self.bias1 = self.add_weight(shape=(n1,), initializer="zeros", name="bias1")
        self.bias2 = self.add_weight(shape=(n2,), initializer="zeros", name="bias2")
        self.coupling = None
        self.chains = None
        if self.coupled:
            self.coupling = self.add_weight(
                shape=(n1, n2),
                initializer=keras.initializers.RandomNormal(stddev=self.coupling_stddev, seed=seed),
                name="coupling",
            )
            # Chains start at 0 and mix under the first sweeps; each row is one [z1, z2] state.
            self.chains = self.add_weight(
                shape=(self.num_chains, n1 + n2),
                initializer="zeros",
                trainable=False,
                name="chains",
                aggregation="only_first_replica",
            )
        self.built = True

    @property
    def num_units(self) -> int:
        """`n1 + n2`."""
        return self.num_units1 + self.num_units2

    @property
    def params(self) -> rbm.RBMParams:
        """The current `(bias1, bias2, coupling)` as tensors (zero couplings when uncoupled)."""
        a = tf.convert_to_tensor(self.bias1)
        b = tf.convert_to_tensor(self.bias2)
        if self.coupled:
            w = tf.convert_to_tensor(self.coupling)
        else:
            w = tf.zeros([self.num_units1, self.num_units2], a.dtype)
        return rbm.RBMParams(a, b, w)

    def split(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`[..., n1 + n2]` -> `(z1 [..., n1], z2 [..., n2])`, checking the last axis."""
        z = tf.convert_to_tensor(z, dtype=self.bias1.dtype)
        if z.shape.rank is not None and z.shape[-1] not in (None, self.num_units):
            raise ValueError(
                f"RBM({self.num_units1}, {self.num_units2}) needs states with last axis "
                f"n1 + n2 = {self.num_units}; got shape {tuple(z.shape)}."
            )
        return z[..., : self.num_units1], z[..., self.num_units1 :]

    def energy(self, z: tf.Tensor) -> tf.Tensor:
        """`E(z)` `[...]` for `z` `[..., n1 + n2]` in `[0, 1]` (binary or relaxed)."""
        z1, z2 = self.split(z)
        return rbm.energy(z1, z2, self.params)

    def call(self, z):
        return self.energy(z)

    def compute_output_spec(self, z):
        return keras.KerasTensor(z.shape[:-1], dtype=self.compute_dtype)

    # --- log Z ---------------------------------------------------------------------------------
    def log_partition_exact(self) -> tf.Tensor:
        """Exact `log Z` (closed form when uncoupled; else summing the smaller group, m ≤ 24)."""
        if not self.coupled:
            return rbm.factorial_log_partition(self.params)
        return rbm.exact_log_partition(self.params)

    def log_partition_ais(
        self, num_chains: int = 100, num_betas: int = 1000, seed=(0, 0)
    ) -> AISResult:
        """AIS estimate of `log Z` and its standard error (exact, stderr 0, when uncoupled)."""
        if not self.coupled:
            log_z = rbm.factorial_log_partition(self.params)
            return AISResult(log_z, tf.zeros_like(log_z), tf.zeros([num_chains], log_z.dtype))
        return ais_log_partition(self.params, num_chains, num_betas, seed)

    def log_partition_surrogate(self, samples: tf.Tensor | None = None) -> tf.Tensor:
        """A scalar whose value is 0 and whose gradient estimates `∇ log Z`.

        Coupled: `−mean_s E(z_s) + sg(mean_s E(z_s))` over model samples `z_s` (default: the
        persistent chains), whose gradient is `−E_p[∇E] = ∇ log Z` in expectation. Uncoupled:
        the exact `log Z − sg(log Z)`.
        """
        if not self.coupled:
            log_z = rbm.factorial_log_partition(self.params)
            return log_z - tf.stop_gradient(log_z)
        samples = self.chains if samples is None else samples
        mean_energy = tf.reduce_mean(self.energy(tf.stop_gradient(samples)))
        return tf.stop_gradient(mean_energy) - mean_energy

    def log_prob(self, z: tf.Tensor, log_z) -> tf.Tensor:
        """`log p(z) = −E(z) − log Z` for binary `z`, given `log Z` (exact or AIS)."""
        return -self.energy(z) - tf.cast(log_z, self.bias1.dtype)

    # --- sampling ------------------------------------------------------------------------------
    def _next_seed(self) -> tf.Tensor:
        return tf.cast(self.seed_generator.next(), tf.int32)

    def advance_chains(self, num_steps: int | None = None) -> tf.Tensor:
        """Moves the persistent chains `num_steps` (default `gibbs_steps`) block Gibbs sweeps
        under the current parameters; returns the new states `[num_chains, n1 + n2]`."""
        if not self.coupled:
            raise ValueError("An uncoupled (factorial) RBM has no persistent chains.")
        z1, _ = self.split(self.chains)
        z1, z2 = sampling.gibbs_chain(
            z1, _stopped(self.params), num_steps or self.gibbs_steps, self._next_seed()
        )
        states = tf.concat([z1, z2], axis=-1)
        self.chains.assign(states)
        return states

    def sample(self, num_samples: int, num_steps: int = 1000, seed=(0, 0)) -> tf.Tensor:
        """`num_samples` states `[N, n1 + n2]`: independent chains started from the biases-only
        factorial model, `num_steps` block Gibbs sweeps each (exact after one when uncoupled)."""
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
        init_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        params = _stopped(self.params)
        z1 = sampling.initial_state(num_samples, params, init_seed)
        z1, z2 = sampling.gibbs_chain(z1, params, num_steps if self.coupled else 1, chain_seed)
        return tf.concat([z1, z2], axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_units1=self.num_units1,
            num_units2=self.num_units2,
            coupled=self.coupled,
            num_chains=self.num_chains,
            gibbs_steps=self.gibbs_steps,
            coupling_stddev=self.coupling_stddev,
            seed=self.seed,
        )
        return config


def _stopped(params: rbm.RBMParams) -> rbm.RBMParams:
    return rbm.RBMParams(*(tf.stop_gradient(p) for p in params))
