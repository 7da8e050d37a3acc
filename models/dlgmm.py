"""Deep latent Gaussian mixture model (DLGMM; Nalisnick, Hertel & Smyth 2016) with relaxed
mixture assignments, any relaxation by name (IGR-SB: unbounded components under a cap).

Generative model, K components (for IGR-SB with adaptive truncation K is only a cap: the
posterior uses as many components as its sticks reach):

```none
c ~ Cat(π)                 π: the categorical the relaxation's prior induces (uniform by design)
z | c ~ N(μ_c, diag σ_c²)  z ∈ R^D; μ [K, D] and log σ [K, D] are trainable weights of the model
x | z ~ p(x | z)           the decoder (Bernoulli or Gaussian pixels)
p(z) = Σ_k π_k N(z; μ_k, σ_k²)                                        (the mixture prior)
```

Variational family:

```none
q(ψ | x):    the relaxation's distribution on the simplex (one variable, K categories), from
             `igr_tf.layers.DiscreteLatent(name)`; its argmax c has the induced pmf q(c | x)
q(z | x, c): N(m_c(x), diag s_c(x)²), one Gaussian per component (encoder heads [K, D])
q(z | x)   = Σ_k q(c = k | x) N(z; m_k(x), s_k(x)²)        (a real density: it integrates to 1)
```

Training objective (one sample; the relaxed ELBO, exact for one-hot ψ):

```none
ε ~ N(0, I_D),  ψ ~ q(ψ | x),  z = Σ_k ψ_k (m_k + s_k ⊙ ε)
−ELBO = −log p(x | z) + Σ_k ψ_k KL(N(m_k, s_k²) ‖ N(μ_k, σ_k²)) + KL(q(ψ | x) ‖ p(ψ))
```

For a one-hot ψ = e_c this is `−log p(x|z) + KL(q(z|x,c) ‖ p(z|c))` plus the assignment's KL,
the ELBO of q(c, z | x) = q(c | x) q(z | x, c) against p(c) p(z | c) p(x | z). The Gaussian KL
is in closed form per component; the assignment's KL is the relaxation's own (its closed form
or its one-sample estimate, as the relaxation's `kl` option says); the model never looks at
which relaxation it holds. With IGR-SB's adaptive truncation the components beyond a draw's cut
get ψ_k = 0 exactly, so they neither move z nor cost KL.

Test log-likelihood: the importance-sampled bound with one-hot components and the marginal
densities of z (the components summed out of both prior and posterior):

```none
c_s ~ q(c | x),  z_s ~ N(m_{c_s}, s_{c_s}²)                        (so z_s ~ q(z | x))
log p(x) ≥ E log (1/S) Σ_s p(x | z_s) p(z_s) / q(z_s | x)
```

q(c | x) is the relaxation's induced categorical (`categorical_log_probs`: exact for GS, a
smoothed Monte Carlo estimate with full support for IGR-SB), so the bound is valid either way.
The number of components used is the count of components whose posterior mass averaged over the
test set, mean_x q(c = k | x), exceeds a share (1% by default).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from igr_tf import evaluation
from igr_tf._checks import check_positive, check_positive_int
from igr_tf._ops import RNG_ALGORITHM, plain_tensorflow
from igr_tf._seed_state import SavesSeedState
from igr_tf.layers import DiscreteLatent, work_dtype
from models.vae import LIKELIHOODS

__all__ = [
    "DeepLatentGaussianMixture",
    "gaussian_kl",
    "mixture_log_density",
]

#: Smallest posterior scale s_k(x) (softplus of the encoder output plus this).
MIN_SCALE = 1e-4
#: Default share of the test set's posterior mass above which a component counts as used.
USED_COMPONENT_MASS = 0.01

_LOG_2PI = math.log(2.0 * math.pi)


def _normal_log_prob(z: tf.Tensor, loc: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """`Σ_d log N(z_d; loc_d, scale_d²)` over the last axis."""
    u = (z - loc) / scale
    return tf.reduce_sum(-0.5 * tf.square(u) - tf.math.log(scale) - 0.5 * _LOG_2PI, axis=-1)


def mixture_log_density(
    z: tf.Tensor, log_weights: tf.Tensor, loc: tf.Tensor, scale: tf.Tensor
) -> tf.Tensor:
    """`log Σ_k w_k N(z; loc_k, diag scale_k²)` for a diagonal Gaussian mixture.

    Args:
      z: points `[..., D]`.
      log_weights: log mixture weights `[..., K]` (log-normalized; `-inf` for absent components).
      loc, scale: components `[..., K, D]` (scale > 0).
    All broadcast against each other on the leading axes. Returns `[...]`.
    """
    per_component = _normal_log_prob(z[..., None, :], loc, scale)  # [..., K]
    return tf.reduce_logsumexp(log_weights + per_component, axis=-1)


def gaussian_kl(loc_q, scale_q, loc_p, scale_p) -> tf.Tensor:
    """`KL(N(loc_q, diag scale_q²) ‖ N(loc_p, diag scale_p²))`, summed over the last axis:
    `Σ_d log(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²) / (2σ_p²) − 1/2`."""
    ratio = tf.square(scale_q / scale_p)
    mean_term = tf.square((loc_q - loc_p) / scale_p)
    return tf.reduce_sum(0.5 * (ratio + mean_term - 1.0 - tf.math.log(ratio)), axis=-1)


@keras.saving.register_keras_serializable(package="models")
class DeepLatentGaussianMixture(SavesSeedState, keras.Model):
    """A VAE whose Gaussian latent z ∈ R^D has a K-component mixture prior (see the module).

    Args:
      relaxation: registered name of the assignment's relaxation ("igr_sb", "gs", ...).
      num_components: K (for IGR-SB with `relaxation_options={"adaptive": True}`, the cap).
      latent_dim: D, the dimension of z.
      temperature: τ of the relaxation (fixed).
      hidden_units: widths of the encoder's ReLU layers (the decoder mirrors them).
      image_shape: `(H, W, C)`, pixels in [0, 1].
      likelihood: "bernoulli" (binary pixels) or "gaussian".
      relaxation_options: options of the relaxation (adaptive, threshold, kl, ...).
      hard: straight-through assignments (forward one-hot ψ, the relaxed gradient).
      prior_loc_stddev: standard deviation of the prior means' random initialization (the
        components start apart so that the posterior can tell them from one another).
      seed: seed of the assignment draws, of the Gaussian noise and of the initializations.
    """

    def __init__(
        self,
        relaxation: str = "igr_sb",
        num_components: int = 50,
        latent_dim: int = 10,
        temperature: float = 0.15,
        hidden_units: tuple[int, ...] = (256, 128),
        image_shape: tuple[int, int, int] = (28, 28, 1),
        likelihood: str = "bernoulli",
        relaxation_options: dict[str, Any] | None = None,
        hard: bool = False,
        prior_loc_stddev: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"`likelihood` must be one of {sorted(LIKELIHOODS)}; got "
                             f"{likelihood!r}.")  # fmt: skip
        self.num_components = check_positive_int(num_components, "num_components")
        if self.num_components < 2:
            raise ValueError(f"`num_components` must be ≥ 2; got {num_components}.")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.hidden_units = tuple(check_positive_int(u, "hidden_units") for u in hidden_units)
        check_positive(prior_loc_stddev, "prior_loc_stddev")
        self.prior_loc_stddev = float(prior_loc_stddev)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.likelihood = likelihood
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.latent = DiscreteLatent(
            relaxation,
            1,
            self.num_components,
            temperature,
            hard=hard,
            relaxation_options=relaxation_options,
            seed=seed,
            name="assignment",
        )
        outputs_per_pixel, self._log_prob = LIKELIHOODS[likelihood]
        dense = [keras.layers.Dense(u, activation="relu") for u in self.hidden_units]
        self.encoder = keras.Sequential([keras.layers.Flatten(), *dense], name="encoder")
        self.assignment_head = keras.layers.Dense(self.latent.params_size, name="assignment_head")
        self.component_head = keras.layers.Dense(
            2 * self.num_components * self.latent_dim, name="component_head"
        )
        self.decoder = keras.Sequential(
            [keras.layers.Dense(u, activation="relu") for u in reversed(self.hidden_units)]
            + [keras.layers.Dense(int(np.prod(self.image_shape)) * outputs_per_pixel)],
            name="decoder",
        )
        self._init_seed = seed
        self._config = dict(
            relaxation=relaxation,
            num_components=self.num_components,
            latent_dim=self.latent_dim,
            temperature=float(temperature),
            hidden_units=self.hidden_units,
            image_shape=self.image_shape,
            likelihood=likelihood,
            relaxation_options=dict(relaxation_options or {}),
            hard=bool(hard),
            prior_loc_stddev=self.prior_loc_stddev,
            seed=seed,
        )
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "recon", "kl_z", "kl_c", *self.latent.metric_names)
        }
        self.build((None, *self.image_shape))

    def build(self, input_shape) -> None:
        self.encoder.build(input_shape)
        features = (
            None,
            self.hidden_units[-1] if self.hidden_units else int(np.prod(input_shape[1:])),
        )
        self.assignment_head.build(features)
        self.component_head.build(features)
        self.latent.build((None, self.latent.params_size))
        self.decoder.build((None, self.latent_dim))
        shape = (self.num_components, self.latent_dim)
        self.prior_loc = self.add_weight(
            name="prior_loc",
            shape=shape,
            initializer=keras.initializers.RandomNormal(
                stddev=self.prior_loc_stddev, seed=self._init_seed
            ),  # fmt: skip
        )
        self.prior_log_scale = self.add_weight(
            name="prior_log_scale", shape=shape, initializer="zeros"
        )
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    # --- pieces ---------------------------------------------------------------------------------
    def encode(self, x: tf.Tensor, training=None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Encoder outputs: assignment parameters `[B, P]` and the components of q(z | x, c),
        loc and scale `[B, K, D]`."""
        h = self.encoder(x, training=training)
        params = self.assignment_head(h)
        raw = tf.reshape(self.component_head(h), [-1, self.num_components, 2 * self.latent_dim])
        # Densities and KLs in float32 (float64 for a float64 model), whatever the compute dtype.
        raw = tf.cast(raw, work_dtype(raw.dtype))
        loc, raw_scale = tf.split(raw, 2, axis=-1)
        return params, loc, tf.math.softplus(raw_scale) + MIN_SCALE

    def prior_components(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The prior mixture: log weights `[K]`, loc and scale `[K, D]` (trainable weights)."""
        loc = tf.convert_to_tensor(self.prior_loc)
        log_pi = self.latent.prior_categorical_log_probs(loc.dtype)
        return log_pi, loc, tf.exp(tf.convert_to_tensor(self.prior_log_scale))

    def log_likelihood(self, x: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """`log p(x | z)` for images `[B, H, W, C]` and latents `[B, D]` -> `[B]`."""
        out = tf.cast(self.decoder(z), tf.float32)
        flat_x = tf.cast(tf.reshape(x, [tf.shape(x)[0], -1]), tf.float32)
        return self._log_prob(flat_x, out)

    def posterior_log_probs(self, x: tf.Tensor, seed=None) -> tf.Tensor:
        """`log q(c | x)` `[B, K]`: the assignment's induced categorical (exact for GS, a Monte
        Carlo estimate from the stateless `seed` for IGR-SB)."""
        params, _, _ = self.encode(x, training=False)
        return self.latent.categorical_log_probs(params, seed=seed)[:, 0, :]

    def log_q_z(self, x: tf.Tensor, z: tf.Tensor, seed=None) -> tf.Tensor:
        """`log q(z | x) = log Σ_k q(c = k | x) N(z; m_k(x), s_k(x)²)`, `[..., B, D]` -> `[..., B]`.

        `seed`: stateless seed of q(c | x)'s Monte Carlo estimate (IGR-SB).
        """
        params, loc, scale = self.encode(x, training=False)
        log_w = self.latent.categorical_log_probs(params, seed=seed)[:, 0, :]
        return mixture_log_density(z, log_w, loc, scale)

    def log_prior_z(self, z: tf.Tensor) -> tf.Tensor:
        """`log p(z) = log Σ_k π_k N(z; μ_k, σ_k²)`, z `[..., D]` -> `[...]`."""
        return mixture_log_density(z, *self.prior_components())

    def call(self, x, training=None):
        """Decoder outputs for one draw of (ψ, z) from the posterior."""
        return self.decoder(self._draw(x, training)["z"])

    def _draw(self, x, training) -> dict[str, tf.Tensor]:
        params, loc, scale = self.encode(x, training=training)
        out = self.latent(params, training=training)
        psi = tf.cast(out["sample"][:, 0, :], loc.dtype)  # [B, K]
        shape = [tf.shape(loc)[0], self.latent_dim]
        # keras.random.normal's draw with Philox named (GaussianLatent.call says why): the same
        # seed conversion (its int64 state mod 2^31 - 2) and so the same numbers.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        eps = tf.random.stateless_normal(shape, seed=seed, dtype=loc.dtype, alg=RNG_ALGORITHM)
        z = tf.einsum("bk,bkd->bd", psi, loc + scale * eps[:, None, :])
        return dict(out, psi=psi, z=z, loc=loc, scale=scale)

    @plain_tensorflow  # also called directly inside users' tf.functions
    def objective(self, x: tf.Tensor, training=None) -> dict[str, tf.Tensor]:
        """Loss terms per example: "loss" (−ELBO), "recon", "kl_z", "kl_c" and diagnostics."""
        draw = self._draw(x, training)
        _, prior_loc, prior_scale = self.prior_components()
        kl_components = gaussian_kl(draw["loc"], draw["scale"], prior_loc, prior_scale)  # [B, K]
        kl_z = tf.reduce_sum(draw["psi"] * kl_components, axis=-1)
        recon = -self.log_likelihood(x, draw["z"])
        terms = {k: draw[k] for k in self.latent.metric_names}
        terms.update(recon=recon, kl_z=kl_z, kl_c=draw["kl"], loss=recon + kl_z + draw["kl"])
        return terms

    def _update(self, terms: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        from igr_tf import training

        x = data[0] if isinstance(data, tuple) else data
        terms = training.minimize(self, lambda x: self.objective(x, training=True), x)
        return training.step_logs(self._update(terms))

    def test_step(self, data):
        from igr_tf import training

        x = data[0] if isinstance(data, tuple) else data
        objective = training.replica_step(self, lambda x: self.objective(x, training=False))
        return training.step_logs(self._update(objective(x)))

    # --- evaluation and generation --------------------------------------------------------------
    def loglik_terms(
        self, x: tf.Tensor, num_samples: int = 100, seed=(0, 0), chunk_size: int = 100
    ) -> dict[str, tf.Tensor]:
        """Per example: "loglik", the importance-sampled bound on log p(x) with S = `num_samples`
        one-hot components (see the module), and "component_probs" q(c | x) `[B, K]`.

        Deterministic given the weights, `x` and the stateless `seed` (shape [2] ints).
        """
        seed = tf.convert_to_tensor(seed, tf.int32)
        proposal_seed, c_seed, eps_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        params, loc, scale = self.encode(x, training=False)
        log_qc = self.latent.categorical_log_probs(params, seed=proposal_seed)[:, 0, :]  # [B, K]
        c = tf.transpose(tf.random.stateless_categorical(log_qc, num_samples, seed=c_seed))
        one_hot = tf.one_hot(c, self.num_components, dtype=loc.dtype)  # [S, B, K]
        eps = tf.random.stateless_normal(
            [num_samples, tf.shape(x)[0], self.latent_dim],
            eps_seed,
            dtype=loc.dtype,
            alg=RNG_ALGORITHM,
        )
        z = (
            tf.einsum("sbk,bkd->sbd", one_hot, loc)
            + tf.einsum("sbk,bkd->sbd", one_hot, scale) * eps
        )
        log_q = mixture_log_density(z, log_qc, loc, scale)  # [S, B]
        log_p = self.log_prior_z(z)
        log_lik = tf.concat(  # decoded `chunk_size` samples at a time (bounds the memory)
            [
                self._chunk_log_likelihood(x, z[i : i + chunk_size])
                for i in range(0, num_samples, chunk_size)
            ],
            0,
        )
        return {
            "loglik": evaluation.log_mean_exp(log_lik + log_p - log_q, axis=0),
            "component_probs": tf.exp(log_qc),
        }

    def _chunk_log_likelihood(self, x: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """`log p(x | z_n)` `[N, B]` for latents `[N, B, D]` (decoded as one batch)."""
        n, b = tf.shape(z)[0], tf.shape(z)[1]
        x_rep = tf.tile(x, [n] + [1] * (len(x.shape) - 1))
        return tf.reshape(self.log_likelihood(x_rep, tf.reshape(z, [-1, self.latent_dim])), [n, b])

    def evaluate_loglik(
        self,
        dataset: tf.data.Dataset,
        num_samples: int = 100,
        seed: int = 0,
        used_mass: float = USED_COMPONENT_MASS,
    ) -> dict[str, Any]:
        """Mean test log-likelihood bound and the components used, over batched data.

        Returns "test_loglik", "components_used" (components with mean_x q(c = k | x) > used_mass),
        "component_mass" (that mean, a list of K floats), "assignment_entropy" (mean_x of the
        entropy of q(c | x) in nats: 0 for certain assignments, log K for uniform ones) and
        "test_loglik_proposal" ("exact" or "monte_carlo": how q(c | x) was computed).
        """
        step = tf.function(lambda x, s: self.loglik_terms(x, num_samples, s), autograph=False)
        total, entropy, count = 0.0, 0.0, 0
        mass = np.zeros(self.num_components)
        for i, batch in enumerate(dataset):
            x = batch[0] if isinstance(batch, tuple) else batch
            terms = step(x, tf.constant([seed, i], tf.int32))
            total += float(tf.reduce_sum(terms["loglik"]))
            probs = terms["component_probs"].numpy().astype(np.float64)
            mass += np.sum(probs, axis=0)
            entropy -= float(np.sum(probs * np.log(np.where(probs > 0, probs, 1.0))))
            count += int(x.shape[0])
        mass /= count
        return {
            "test_loglik": total / count,
            "components_used": int(np.sum(mass > used_mass)),
            "component_mass": [float(m) for m in mass],
            "assignment_entropy": entropy / count,
            "test_loglik_proposal": "exact" if self.latent.relaxation.exact_categorical
            else "monte_carlo",
        }  # fmt: skip

    def generate(self, num_samples: int, component: int | None = None, seed=(0, 0)) -> tf.Tensor:
        """Images `[N, H, W, C]` (pixel means) decoded from z ~ p(z) (or p(z | c = component))."""
        seed = tf.convert_to_tensor(seed, tf.int32)
        c_seed, eps_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        log_pi, loc, scale = self.prior_components()
        if component is None:
            c = tf.random.stateless_categorical(log_pi[None], num_samples, seed=c_seed)[0]
        else:
            if not 0 <= component < self.num_components:
                raise ValueError(f"`component` must be in [0, {self.num_components}); got "
                                 f"{component}.")  # fmt: skip
            c = tf.fill([num_samples], tf.constant(component, tf.int64))
        eps = tf.random.stateless_normal(
            [num_samples, self.latent_dim], eps_seed, alg=RNG_ALGORITHM
        )
        z = tf.gather(loc, c) + tf.gather(scale, c) * eps
        pixels = int(np.prod(self.image_shape))
        means = tf.sigmoid(self.decoder(z)[:, :pixels])
        return tf.reshape(means, [num_samples, *self.image_shape])

    def get_config(self) -> dict[str, Any]:
        return dict(super().get_config(), **self._config)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["hidden_units"] = tuple(config["hidden_units"])
        config["image_shape"] = tuple(config["image_shape"])
        return cls(**config)
