"""GumBolt: a discrete VAE with a Boltzmann-machine prior, trained through relaxed samples.

Khoshaman & Amin, "GumBolt: Extending Gumbel trick to Boltzmann priors" (NeurIPS 2018). Binary
latents `z = [z1, z2] ∈ {0, 1}^{n1 + n2}`, an RBM prior `p(z) = exp(−E(z)) / Z`
(`igr_tf.boltzmann.RBM`), a factorial posterior `q(z | x) = Π_i Bernoulli(z_i; q_i(x))` and a
Bernoulli decoder `p(x | z)`.

```none
training, relaxed ζ_s ~ q_τ(ζ | x) (any binary relaxation: "gs", "igr_i", "igr_sb"):
  proxy prior      p̆(ζ) = exp(−E(ζ)) / Z                 (the RBM energy on relaxed ζ)
  proxy posterior  q̆(ζ | x) = Π_i q_i^{ζ_i} (1 − q_i)^{1 − ζ_i}
  L̆_k(x) = log (1/k) Σ_s p(x | ζ_s) p̆(ζ_s) / q̆(ζ_s | x),      loss = −L̆_k
evaluation, discrete z_s ~ q(z | x):
  log p(x) ≳ log (1/S) Σ_s p(x | z_s) exp(−E(z_s)) / q(z_s | x) − log Z,   log Z by AIS
```

Both proxies equal the discrete pmfs on binary inputs, so as τ → 0 the relaxed objective tends
to the discrete k-sample importance-weighted bound. `log Z` does not depend on the sample, so
training needs only its gradient, `∇ log Z = E_p[−∇E]`, from the RBM's persistent chains; the
reported "loss" is therefore `−(L̆_k + log Z)`, the objective up to that constant. With
`prior="factorial"` the RBM has no couplings (a factorial Bernoulli prior of the same size):
the baseline, trained and evaluated by the same code.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from igr_tf._checks import check_positive, check_positive_int
from igr_tf._ops import RNG_ALGORITHM, plain_tensorflow
from igr_tf._seed_state import SavesSeedState
from igr_tf.boltzmann import RBM, posterior
from igr_tf.evaluation import log_mean_exp
from igr_tf.paper import GUMBOLT_TEMPERATURE

__all__ = ["ARCHITECTURES", "DEFAULT_TEMPERATURE", "PRIORS", "GumBoltVAE"]

#: Hidden layers of the encoder (the decoder mirrors them), tanh units.
ARCHITECTURES: dict[str, tuple[int, ...]] = {"linear": (), "nonlinear": (200, 200)}
PRIORS: tuple[str, ...] = ("rbm", "factorial")
#: Temperature of the relaxed posterior used unless told otherwise (its home is igr_tf.paper).
DEFAULT_TEMPERATURE = GUMBOLT_TEMPERATURE


def _bernoulli_log_prob(x: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """`Σ_pixels log Bernoulli(x; σ(logits))` over the last axis."""
    return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), -1)


def proxy_log_posterior(zeta: tf.Tensor, log_on: tf.Tensor, log_off: tf.Tensor) -> tf.Tensor:
    """`log q̆(ζ | x) = Σ_i ζ_i log q_i + (1 − ζ_i) log(1 − q_i)` `[...]` (the discrete log pmf
    when ζ is binary)."""
    return tf.reduce_sum(zeta * log_on + (1.0 - zeta) * log_off, axis=-1)


@keras.saving.register_keras_serializable(package="models")
class GumBoltVAE(SavesSeedState, keras.Model):
    """Discrete VAE with `n1 + n2` binary latents and an RBM (or factorial) prior.

    Args:
      relaxation: binary relaxation of the posterior: "gs" (Binary Concrete, as in the paper),
        "igr_i" or "igr_sb" (identical for binary variables; see `igr_tf.boltzmann.posterior`).
      learn_scale: IGR only: learn the Gaussian scale σ per unit as well as μ. Off by default:
        with GumBolt's proxy posterior a learned σ makes the objective unbounded (σ → 0), see
        `igr_tf.boltzmann.posterior`; σ = 1 then.
      latent_sizes: `(n1, n2)`, the RBM's two groups.
      prior: "rbm" (GumBolt) or "factorial" (no couplings: the baseline).
      temperature: τ of the relaxed posterior (fixed).
      arch: "linear" (no hidden layer) or "nonlinear" (two hidden layers of 200 tanh units).
      image_shape: `(H, W, C)`, binary pixels.
      num_samples: k of the importance-weighted training bound (1: the relaxed ELBO).
      num_chains, gibbs_steps: persistent chains of the RBM and sweeps per training step.
      seed: seed of the posterior samples and of the chains.
    """

    def __init__(
        self,
        relaxation: str = "gs",
        latent_sizes: tuple[int, int] = (20, 20),
        prior: str = "rbm",
        temperature: float = DEFAULT_TEMPERATURE,
        arch: str = "nonlinear",
        image_shape: tuple[int, int, int] = (28, 28, 1),
        num_samples: int = 1,
        num_chains: int = 100,
        gibbs_steps: int = 1,
        learn_scale: bool = False,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.relaxation = posterior.check_name(relaxation)
        if learn_scale and relaxation == "gs":
            raise ValueError("`learn_scale` is for the IGR relaxations; GS has no scale.")
        self.learn_scale = bool(learn_scale)
        if prior not in PRIORS:
            raise ValueError(f"`prior` must be one of {PRIORS}; got {prior!r}.")
        if arch not in ARCHITECTURES:
            raise ValueError(f"`arch` must be one of {sorted(ARCHITECTURES)}; got {arch!r}.")
        check_positive(temperature, "temperature")
        if len(latent_sizes) != 2:
            raise ValueError(f"`latent_sizes` must be (n1, n2); got {latent_sizes!r}.")
        n1, n2 = (check_positive_int(n, "latent_sizes") for n in latent_sizes)
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.temperature = float(temperature)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_latents = n1 + n2
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.prior = RBM(
            n1,
            n2,
            coupled=prior == "rbm",
            num_chains=num_chains,
            gibbs_steps=gibbs_steps,
            seed=seed,
            name="prior",
        )
        hidden = ARCHITECTURES[arch]
        self._params_per_unit = posterior.num_params(self.relaxation, self.learn_scale)
        dense = [keras.layers.Dense(u, activation="tanh") for u in hidden]
        self.encoder = keras.Sequential(
            [
                keras.layers.Flatten(),
                *dense,
                keras.layers.Dense(self.num_latents * self._params_per_unit),
            ],
            name="encoder",
        )
        self.decoder = keras.Sequential(
            [keras.layers.Dense(u, activation="tanh") for u in reversed(hidden)]
            + [keras.layers.Dense(int(np.prod(self.image_shape)))],
            name="decoder",
        )
        self._config = dict(
            relaxation=relaxation,
            latent_sizes=(n1, n2),
            prior=prior,
            temperature=self.temperature,
            arch=arch,
            image_shape=self.image_shape,
            num_samples=self.num_samples,
            num_chains=num_chains,
            gibbs_steps=gibbs_steps,
            learn_scale=self.learn_scale,
            seed=seed,
        )
        self.trackers = {
            name: keras.metrics.Mean(name=name) for name in ("loss", "recon", "energy", "entropy")
        }
        self.build((None, *self.image_shape))

    def build(self, input_shape) -> None:
        self.encoder.build(input_shape)
        self.decoder.build((None, self.num_latents))
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    # --- pieces ---------------------------------------------------------------------------------
    def encode(self, x: tf.Tensor, training=None) -> tf.Tensor:
        """Posterior parameters `[B, n, P]`."""
        out = self.encoder(x, training=training)
        return tf.reshape(out, [-1, self.num_latents, self._params_per_unit])

    def log_likelihood(self, x: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """`log p(x | z)` `[S, B]` for images `[B, H, W, C]` and latents `[S, B, n]`."""
        s, b = tf.shape(z)[0], tf.shape(z)[1]
        logits = self.decoder(tf.reshape(z, [-1, self.num_latents]))
        logits = tf.reshape(logits, [s, b, -1])
        labels = tf.broadcast_to(tf.reshape(tf.cast(x, logits.dtype), [1, b, -1]), tf.shape(logits))
        return _bernoulli_log_prob(labels, logits)

    def _seed(self) -> tf.Tensor:
        return tf.cast(self.seed_generator.next(), tf.int32)

    def _relaxed(self, params: tf.Tensor) -> posterior.RelaxedBinary:
        return posterior.relaxed(
            self.relaxation, params, self.temperature, self._seed(), self.learn_scale
        )

    def call(self, x, training=None):
        """Decoder logits `[B, H·W·C]` for one relaxed draw of the latents."""
        return self.decoder(self._relaxed(self.encode(x, training)).relaxed)

    @plain_tensorflow  # also called directly inside users' tf.functions
    def objective(self, x: tf.Tensor, training=None) -> dict[str, tf.Tensor]:
        """Per-example terms: "loss" `−(L̆_k + log Z)`, "recon" `−log p(x|ζ)`, "energy" `E(ζ)`,
        "entropy" `−log q̆(ζ|x)` (the last three averaged over the k samples)."""
        params = self.encode(x, training)
        tiled = tf.broadcast_to(params, tf.concat([[self.num_samples], tf.shape(params)], 0))
        draw = self._relaxed(tiled)
        zeta = draw.relaxed  # [k, B, n]
        log_q = proxy_log_posterior(zeta, draw.log_prob_on, draw.log_prob_off)
        energy = self.prior.energy(zeta)
        log_lik = self.log_likelihood(x, zeta)
        bound = log_mean_exp(log_lik - energy - log_q, axis=0)
        return {
            "loss": -bound,
            "recon": -tf.reduce_mean(log_lik, 0),
            "energy": tf.reduce_mean(energy, 0),
            "entropy": -tf.reduce_mean(log_q, 0),
        }

    def _update(self, terms: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    # Nothing here branches on tensors (the only loops are explicit tf.while_loops), and
    # converting this code took most of the tracing time (seconds per model on a CPU).
    @plain_tensorflow
    def train_step(self, data):
        from igr_tf import training

        x = data[0] if isinstance(data, tuple) else data
        # Negative phase first: the chains move under the current parameters (no gradient).
        samples = self.prior.advance_chains() if self.prior.coupled else None

        def objective(x):
            terms = self.objective(x, training=True)
            # The surrogate's value is exactly 0 and its gradient ∇ log Z (PCD, or exact when
            # factorial); added per example, the batch mean that minimize differentiates gains it
            # once (under N replicas too: N replicas x surrogate / N).
            surrogate = self.prior.log_partition_surrogate(samples)
            return dict(terms, loss=terms["loss"] + tf.cast(surrogate, terms["loss"].dtype))

        terms = training.minimize(self, objective, x)
        return training.step_logs(self._update(terms))

    @plain_tensorflow
    def test_step(self, data):
        from igr_tf import training

        x = data[0] if isinstance(data, tuple) else data
        objective = training.replica_step(self, lambda x: self.objective(x, training=False))
        return training.step_logs(self._update(objective(x)))

    # --- evaluation -----------------------------------------------------------------------------
    def log_partition(
        self, method: str = "ais", num_chains: int = 100, num_betas: int = 1000, seed=(0, 0)
    ) -> dict[str, float]:
        """`{"log_z", "log_z_se", "method"}`: AIS (with its standard error) or exact."""
        if method == "exact":
            return {
                "log_z": float(self.prior.log_partition_exact()),
                "log_z_se": 0.0,
                "method": "exact",
            }
        if method != "ais":
            raise ValueError(f"`method` must be 'ais' or 'exact'; got {method!r}.")
        result = self.prior.log_partition_ais(num_chains, num_betas, seed)
        return {"log_z": float(result.log_z), "log_z_se": float(result.stderr), "method": "ais"}

    def bernoulli_log_probs(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(log q(z = 1 | x), log q(z = 0 | x))` `[B, n]` of the discrete posterior."""
        return posterior.bernoulli_log_probs(
            self.relaxation, self.encode(x, False), self.learn_scale
        )

    def loglik_terms(
        self, x: tf.Tensor, log_z, num_samples: int = 100, seed=(0, 0), chunk_size: int = 100
    ) -> tf.Tensor:
        """Importance-sampled `log p(x)` per example `[B]` with discrete latents.

        `z_s ~ q(z | x)` (Bernoulli, the relaxation's τ → 0 limit), `S = num_samples`:
        `log (1/S) Σ_s p(x | z_s) exp(−E(z_s)) / q(z_s | x) − log Z`. A stochastic lower bound on
        the discrete model's `log p(x)` when `log Z` is exact; with an AIS `log Z` it inherits the
        AIS error (a shift common to all examples). Deterministic given the stateless `seed`.
        """
        log_on, log_off = self.bernoulli_log_probs(x)
        shape = tf.concat([[num_samples], tf.shape(log_on)], 0)
        u = tf.random.stateless_uniform(
            shape, tf.cast(seed, tf.int32), dtype=log_on.dtype, alg=RNG_ALGORITHM
        )
        # u < q, not log u < log q: u can be exactly 0 (2^-23 in float32), and log 0 = -inf
        # would switch on a unit whose q underflows, with a weight of 1/q.
        z = tf.cast(u < tf.exp(log_on), log_on.dtype)  # [S, B, n]
        log_q = proxy_log_posterior(z, log_on, log_off)
        log_lik = tf.concat(
            [
                self.log_likelihood(x, z[i : i + chunk_size])
                for i in range(0, num_samples, chunk_size)
            ],
            axis=0,
        )
        log_w = log_lik - self.prior.energy(z) - log_q
        return log_mean_exp(log_w, axis=0) - tf.cast(log_z, log_w.dtype)

    def evaluate_loglik(
        self, dataset: tf.data.Dataset, log_z: float, num_samples: int = 100, seed: int = 0
    ) -> dict[str, float]:
        """Mean test log-likelihood over batched data, and its standard error over examples."""
        step = tf.function(
            lambda x, s: self.loglik_terms(x, log_z, num_samples, s), autograph=False
        )
        values = []
        for i, batch in enumerate(dataset):
            x = batch[0] if isinstance(batch, tuple) else batch
            values.append(step(x, tf.constant([seed, i], tf.int32)).numpy())
        values = np.concatenate(values)
        return {
            "test_loglik": float(values.mean()),
            "test_loglik_se_examples": float(values.std(ddof=1) / math.sqrt(len(values))),
        }

    def generate(self, num_samples: int, num_steps: int = 1000, seed=(0, 0)) -> tf.Tensor:
        """Pixel means `[N, H, W, C]` decoded from `num_samples` prior samples (block Gibbs)."""
        z = self.prior.sample(num_samples, num_steps, seed)
        return tf.reshape(tf.sigmoid(self.decoder(z)), [num_samples, *self.image_shape])

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), **self._config)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["latent_sizes"] = tuple(config["latent_sizes"])
        config["image_shape"] = tuple(config["image_shape"])
        return cls(**config)
