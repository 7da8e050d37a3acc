"""The bijector harness itself: it passes on TFP's own bijectors and fails on broken ones.

Each broken bijector below has one deliberate defect; the test asserts that the harness check
meant to catch it raises AssertionError (and, where it matters, that the other checks do not, so
we know which check does the catching).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from bijector_harness import (
    EMBEDDED,
    FIRST_COORDINATES,
    LOG_RATIOS,
    assert_batch_shape,
    assert_bijective_and_finite,
    assert_composes,
    assert_density_integrates_to_one,
    assert_event_shapes,
    assert_finite_with_gradients,
    assert_log_det_matches_autodiff,
    assert_log_prob_matches_samples,
    check_bijector,
    fresh,
)
from tensorflow_probability.python.internal import parameter_properties

tfb = tfp.bijectors
tfd = tfp.distributions

DTYPES = [np.float32, np.float64]


def _simplex_points(rng, k, n, dtype):
    return rng.dirichlet(np.ones(k), size=n).astype(dtype)


# ------------------------------------------------------------------------------------------------
# Broken bijectors, one defect each.
# ------------------------------------------------------------------------------------------------


class ScaleWithLogDetOffset(tfb.Scale):
    """y = s·x with fldj and ildj both off by 0.1 per coordinate (consistent with each other)."""

    def _forward_log_det_jacobian(self, x):
        return tf.math.log(tf.abs(self.scale)) + 0.1 + tf.zeros_like(x)

    def _inverse_log_det_jacobian(self, y):
        return -tf.math.log(tf.abs(self.scale)) - 0.1 + tf.zeros_like(y)


class ExpWithWrongInverse(tfb.Exp):
    """exp whose inverse is off by a relative 1e-3."""

    def _inverse(self, y):
        return tf.math.log(y) * 1.001


class ExpWithInconsistentIldj(tfb.Exp):
    """exp whose ildj disagrees with its (correct) fldj by 0.01."""

    def _forward_log_det_jacobian(self, x):
        return x

    def _inverse_log_det_jacobian(self, y):
        return -tf.math.log(y) + 0.01


class SoftmaxCenteredWrongEventShape(tfb.SoftmaxCentered):
    """SoftmaxCentered that claims its output event shape equals its input's (K-1, not K)."""

    def _forward_event_shape(self, input_shape):
        return input_shape

    def _forward_event_shape_tensor(self, input_shape):
        return input_shape


class SoftmaxCenteredWithoutHalfLogK(tfb.SoftmaxCentered):
    """SoftmaxCentered without the ½ log K embedding term: the first-coordinates log-det."""

    def _forward_log_det_jacobian(self, x):
        k = tf.cast(tf.shape(x)[-1] + 1, x.dtype)
        return super()._forward_log_det_jacobian(x) - 0.5 * tf.math.log(k)

    def _inverse_log_det_jacobian(self, y):
        k = tf.cast(tf.shape(y)[-1], y.dtype)
        return super()._inverse_log_det_jacobian(y) + 0.5 * tf.math.log(k)


class LogSoftmaxCentered(tfb.AutoCompositeTensorBijector):
    """R^{K-1} -> log-simplex, y = log_softmax([x, 0]), with the first-coordinates log-det.

    ∂y_{1..K-1}/∂x = I - 1ψ'ᵀ, so log|det| = log(1 - Σ_{k<K} ψ_k) = log ψ_K = y_K. The map of
    `ExpRelaxedOneHotCategorical`-style densities on log ψ.
    """

    def __init__(self, validate_args=False, name="log_softmax_centered"):
        parameters = dict(locals())
        super().__init__(
            forward_min_event_ndims=1,
            validate_args=validate_args,
            parameters=parameters,
            name=name,
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict()

    def _forward(self, x):
        return tf.math.log_softmax(tf.concat([x, tf.zeros_like(x[..., :1])], -1), axis=-1)

    def _inverse(self, y):
        return y[..., :-1] - y[..., -1:]

    def _forward_log_det_jacobian(self, x):
        return self._forward(x)[..., -1]

    def _inverse_log_det_jacobian(self, y):
        return -y[..., -1]

    def _forward_event_shape(self, s):
        return s[:-1].concatenate([s[-1] + 1]) if s[-1] is not None else s

    def _forward_event_shape_tensor(self, s):
        return tf.concat([s[:-1], s[-1:] + 1], 0)

    def _inverse_event_shape(self, s):
        return s[:-1].concatenate([s[-1] - 1]) if s[-1] is not None else s

    def _inverse_event_shape_tensor(self, s):
        return tf.concat([s[:-1], s[-1:] - 1], 0)


class VectorScale(tfb.AutoCompositeTensorBijector):
    """y = s ⊙ x on vector events, s of shape [..., D]: `scale` has event ndims 1."""

    def __init__(self, scale, validate_args=False, name="vector_scale"):
        parameters = dict(locals())
        self._scale = tf.convert_to_tensor(scale)
        super().__init__(
            forward_min_event_ndims=1,
            validate_args=validate_args,
            parameters=parameters,
            dtype=self._scale.dtype,
            name=name,
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(scale=parameter_properties.ParameterProperties(event_ndims=1))

    @property
    def scale(self):
        return self._scale

    def _forward(self, x):
        return self._scale * x

    def _inverse(self, y):
        return y / self._scale

    def _forward_log_det_jacobian(self, x):
        return tf.reduce_sum(tf.math.log(tf.abs(self._scale)), -1) + tf.zeros_like(x[..., 0])


class VectorScaleClaimingScalarScale(VectorScale):
    """The same map, but `_parameter_properties` says `scale` is a batch of scalars."""

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(scale=parameter_properties.ParameterProperties(event_ndims=0))


class MixesBatchMembers(tfb.AutoCompositeTensorBijector):
    """y = x + 0.1·mean_batch(x): invertible on the whole batch, but members interact."""

    def __init__(self, validate_args=False, name="mixes_batch_members"):
        parameters = dict(locals())
        super().__init__(
            forward_min_event_ndims=1,
            validate_args=validate_args,
            parameters=parameters,
            name=name,
        )

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict()

    def _forward(self, x):
        return x + 0.1 * tf.reduce_mean(x, axis=0)

    def _inverse(self, y):
        return y - (0.1 / 1.1) * tf.reduce_mean(y, axis=0)

    def _forward_log_det_jacobian(self, x):
        return tf.zeros_like(x[..., 0])

    def _inverse_log_det_jacobian(self, y):
        return tf.zeros_like(y[..., 0])


class NaiveSoftplus(tfb.Softplus):
    """softplus as log(1 + exp(x)): overflows for large x."""

    def _forward(self, x):
        return tf.math.log(1.0 + tf.exp(x))


class WrongOnlyWhenTraced(tfb.Exp):
    """exp that is right eagerly and 1% off inside tf.function / XLA."""

    def _forward(self, x):
        y = tf.exp(x)
        return y if tf.executing_eagerly() else 1.01 * y


class ShiftedSampler(tfd.TransformedDistribution):
    """A TransformedDistribution whose sampler shifts the base sample (log_prob unchanged)."""

    def sample(self, sample_shape=(), seed=None, name="sample"):
        z = self.distribution.sample(sample_shape, seed=seed)
        return self.bijector.forward(z + 0.3)


# ------------------------------------------------------------------------------------------------
# 1. The harness passes on TFP's own bijectors.
# ------------------------------------------------------------------------------------------------


def test_fresh_breaks_the_bijector_cache():
    """Why the harness feeds only fresh tensors: the cache would answer round trips itself."""
    bij = tfb.SoftmaxCentered()
    x = tf.constant([[0.3, -1.0]])
    y = bij.forward(x)
    assert bij.inverse(y) is x
    assert bij.inverse(fresh(y)) is not x


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_centered_passes_eager_and_xla(dtype):
    rng = np.random.default_rng(0)
    x = (2.0 * rng.normal(size=(5, 3))).astype(dtype)
    y = _simplex_points(rng, 4, 5, dtype)
    # unknown_sizes=False: TFP 0.25's SoftmaxCentered.inverse_event_shape([None]) raises.
    check_bijector(tfb.SoftmaxCentered(), x, y, convention=EMBEDDED, unknown_sizes=False)


def test_inverted_softmax_centered_passes():
    """A map down from the simplex: the harness checks its volume through the inverse."""
    rng = np.random.default_rng(1)
    y = (2.0 * rng.normal(size=(5, 3))).astype(np.float64)
    x = _simplex_points(rng, 4, 5, np.float64)
    check_bijector(
        tfb.Invert(tfb.SoftmaxCentered()),
        x,
        y,
        convention=EMBEDDED,
        modes=("eager",),
        unknown_sizes=False,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_bijectors_pass(dtype):
    rng = np.random.default_rng(2)
    x = (3.0 * rng.normal(size=(4, 3))).astype(dtype)
    check_bijector(tfb.Softplus(), x, event_ndims=0, modes=("eager", "graph"))
    check_bijector(tfb.Exp(), x, event_ndims=1, modes=("eager",))


def test_chain_and_batched_parameters_pass():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3)).astype(np.float64)
    y = _simplex_points(rng, 4, 4, np.float64)
    chain = tfb.Chain(
        [tfb.SoftmaxCentered(), tfb.Shift(np.float64(0.3)), tfb.Scale(np.float64(2.0))]
    )
    check_bijector(chain, x, y, convention=EMBEDDED, modes=("eager",), unknown_sizes=False)
    # A batch of three scalings of scalar events: slicing and broadcasting are checked.
    scale = tfb.Scale(np.array([0.5, 2.0, -3.0]))
    check_bijector(scale, x, event_ndims=0, modes=("eager", "xla"))


def test_softmax_centered_log_det_is_exactly_the_embedded_convention():
    """TFP's SoftmaxCentered: fldj = ½ log det(JᵀJ) = (first-K-1 log-det) + ½ log K, exactly."""
    rng = np.random.default_rng(4)
    for k in (2, 3, 6):
        x = (2.0 * rng.normal(size=(6, k - 1))).astype(np.float64)
        tight = dict(rtol=1e-12, atol=1e-12)
        assert_log_det_matches_autodiff(tfb.SoftmaxCentered(), x, convention=EMBEDDED, **tight)
        with pytest.raises(AssertionError, match="first_coordinates"):
            assert_log_det_matches_autodiff(tfb.SoftmaxCentered(), x, convention=FIRST_COORDINATES)
        # Less ½ log K, it is exactly the first-coordinates value.
        assert_log_det_matches_autodiff(
            SoftmaxCenteredWithoutHalfLogK(), x, convention=FIRST_COORDINATES, **tight
        )


def test_conventions_for_a_map_onto_log_simplex_points():
    """log_softmax([x, 0]): log-det y_K in first coordinates, 0 in log-ratios (r = x)."""
    rng = np.random.default_rng(5)
    x = (3.0 * rng.normal(size=(6, 4))).astype(np.float64)
    check_bijector(LogSoftmaxCentered(), x, convention=FIRST_COORDINATES, modes=("eager",))
    for wrong in (EMBEDDED, LOG_RATIOS):
        with pytest.raises(AssertionError, match=wrong):
            assert_log_det_matches_autodiff(LogSoftmaxCentered(), x, convention=wrong)
    loc = rng.normal(size=(2, 2))
    dist = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(loc, np.ones_like(loc)), LogSoftmaxCentered()
    )
    assert_density_integrates_to_one(dist, "log_simplex", FIRST_COORDINATES, rtol=1e-3)
    with pytest.raises(AssertionError, match="∫ density"):
        assert_density_integrates_to_one(dist, "log_simplex", LOG_RATIOS, rtol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extremes_are_finite_for_tfp_bijectors(dtype):
    x = np.array([[50.0, -50.0, 0.0], [-50.0, -50.0, -50.0], [50.0, 50.0, 50.0]], dtype)
    for mode in ("eager", "xla"):
        assert_finite_with_gradients(tfb.SoftmaxCentered(), x, mode=mode)
    scale = tfb.Scale(tf.constant([0.5, 2.0, -3.0], dtype))
    assert_finite_with_gradients(scale, x, event_ndims=0, mode="xla")


@pytest.mark.parametrize("dtype", DTYPES)
def test_transformed_distribution_on_softmax_centered_is_normalised(dtype):
    rng = np.random.default_rng(6)

    def dist(k):
        loc = rng.normal(size=(2, k - 1)).astype(dtype)
        scale = rng.uniform(0.5, 1.5, size=(2, k - 1)).astype(dtype)
        return tfd.TransformedDistribution(
            tfd.MultivariateNormalDiag(loc, scale), tfb.SoftmaxCentered()
        )

    assert_log_prob_matches_samples(dist(4), "simplex", EMBEDDED)
    assert_density_integrates_to_one(dist(2), "simplex", EMBEDDED)
    assert_density_integrates_to_one(dist(3), "simplex", EMBEDDED, rtol=1e-3)


def test_exp_relaxed_one_hot_categorical_is_a_log_ratio_density():
    """TFP's ExpRelaxedOneHotCategorical: its density on y = log ψ is w.r.t. Lebesgue measure on
    the log-ratios y_k - y_K, not on the first K-1 coordinates (which would need a factor ψ_K).
    """
    for k in (2, 3):
        dist = tfd.ExpRelaxedOneHotCategorical(
            temperature=np.float64(0.7), logits=np.linspace(-1.0, 1.0, k)
        )
        assert_density_integrates_to_one(dist, "log_simplex", LOG_RATIOS, rtol=1e-3)
        with pytest.raises(AssertionError, match="∫ density"):
            assert_density_integrates_to_one(dist, "log_simplex", FIRST_COORDINATES, rtol=1e-3)
    dist = tfd.ExpRelaxedOneHotCategorical(
        temperature=np.float64(0.7), logits=np.array([0.3, -0.5, 1.0, 0.0])
    )
    assert_log_prob_matches_samples(dist, "log_simplex", LOG_RATIOS)


def test_real_line_distributions_are_normalised():
    """Sinh-transformed normals: event size 1 (batch of 2) and 2."""
    loc = np.array([[0.3], [-1.0]])
    one_d = tfd.Independent(
        tfd.TransformedDistribution(tfd.Normal(loc, np.array([[1.0], [0.5]])), tfb.Sinh()), 1
    )
    two_d = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(np.array([0.3, -0.2]), np.array([0.8, 0.6])), tfb.Sinh()
    )
    for dist in (one_d, two_d):
        assert_density_integrates_to_one(dist, "real", rtol=1e-3)
        assert_log_prob_matches_samples(dist, "real")


# ------------------------------------------------------------------------------------------------
# 2. The harness fails on broken bijectors.
# ------------------------------------------------------------------------------------------------


def test_catches_log_det_off_by_a_constant():
    x = np.random.default_rng(10).normal(size=(4, 3))
    bij = ScaleWithLogDetOffset(np.float64(2.0))
    assert_bijective_and_finite(bij, x)  # fldj = -ildj still holds ...
    with pytest.raises(AssertionError, match="autodiff"):  # ... but not the Jacobian
        assert_log_det_matches_autodiff(bij, x)
    with pytest.raises(AssertionError):
        check_bijector(bij, x, modes=("eager",))
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(np.zeros(1), np.ones(1)), bij)
    with pytest.raises(AssertionError, match="∫ density"):
        assert_density_integrates_to_one(dist, "real")


def test_catches_a_wrong_inverse():
    x = np.random.default_rng(11).normal(size=(4, 3))
    with pytest.raises(AssertionError, match="inverse"):
        assert_bijective_and_finite(ExpWithWrongInverse(), x)


def test_catches_fldj_inconsistent_with_ildj():
    x = np.random.default_rng(12).normal(size=(4, 3))
    bij = ExpWithInconsistentIldj()
    assert_log_det_matches_autodiff(bij, x)  # fldj itself is right
    with pytest.raises(AssertionError, match="ildj"):
        assert_bijective_and_finite(bij, x)


def test_catches_a_wrong_event_shape():
    x = np.random.default_rng(13).normal(size=(4, 3))
    with pytest.raises(AssertionError, match="forward_event_shape"):
        assert_event_shapes(SoftmaxCenteredWrongEventShape(), x, unknown_sizes=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_catches_a_log_det_missing_half_log_k(dtype):
    rng = np.random.default_rng(14)
    x = (2.0 * rng.normal(size=(5, 3))).astype(dtype)
    bij = SoftmaxCenteredWithoutHalfLogK()
    assert_bijective_and_finite(bij, x)
    with pytest.raises(AssertionError, match="embedded"):
        assert_log_det_matches_autodiff(bij, x, convention=EMBEDDED)
    # It is exactly the first-coordinates log-det.
    assert_log_det_matches_autodiff(bij, x, convention=FIRST_COORDINATES)
    loc = rng.normal(size=(2, 1)).astype(dtype)
    dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(loc, tf.ones_like(loc)), bij)
    with pytest.raises(AssertionError, match="∫ density"):
        assert_density_integrates_to_one(dist, "simplex", EMBEDDED)


def test_catches_wrong_parameter_event_ndims():
    x = np.random.default_rng(15).normal(size=(4, 3))
    scale = np.array([0.5, 2.0, 3.0])
    assert_batch_shape(VectorScale(scale), x)
    with pytest.raises(AssertionError, match="batch"):
        assert_batch_shape(VectorScaleClaimingScalarScale(scale), x)


def test_catches_batch_members_that_interact():
    x = np.random.default_rng(16).normal(size=(4, 3))
    bij = MixesBatchMembers()
    assert_bijective_and_finite(bij, x)
    with pytest.raises(AssertionError, match="interact"):
        assert_log_det_matches_autodiff(bij, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_catches_non_finite_values_at_the_extremes(dtype):
    x = np.array([[1000.0, -1000.0, 0.0]], dtype)
    assert_finite_with_gradients(tfb.Softplus(), x, event_ndims=0)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_finite_with_gradients(NaiveSoftplus(), x, event_ndims=0)


def test_catches_a_defect_only_under_xla():
    x = np.random.default_rng(17).normal(size=(4, 3))
    bij = WrongOnlyWhenTraced()
    assert_bijective_and_finite(bij, x, mode="eager")
    with pytest.raises(AssertionError, match=r"\[xla\]"):
        assert_bijective_and_finite(bij, x, mode="xla")
    with pytest.raises(AssertionError, match=r"\[xla\]"):
        assert_log_det_matches_autodiff(bij, x, mode="xla")
    # Chain and Invert agree with the bijector in the same mode: composition cannot see it.
    assert_composes(bij, x, mode="xla")


def test_catches_a_sampler_that_disagrees_with_log_prob():
    loc = np.array([[0.2, -0.4, 0.1]])
    base = tfd.MultivariateNormalDiag(loc, np.ones_like(loc))
    good = tfd.TransformedDistribution(base, tfb.SoftmaxCentered())
    assert_log_prob_matches_samples(good, "simplex", EMBEDDED)
    with pytest.raises(AssertionError, match="mean"):
        assert_log_prob_matches_samples(
            ShiftedSampler(base, tfb.SoftmaxCentered()), "simplex", EMBEDDED
        )
    # A density missing the ½ log K term is caught by the normalisation.
    with pytest.raises(AssertionError, match="normalisation"):
        assert_log_prob_matches_samples(
            tfd.TransformedDistribution(base, SoftmaxCenteredWithoutHalfLogK()),
            "simplex",
            EMBEDDED,
        )


def test_misuse_is_a_value_error():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="convention"):
        assert_log_det_matches_autodiff(tfb.SoftmaxCentered(), x)
    with pytest.raises(ValueError, match="mode"):
        assert_bijective_and_finite(tfb.Exp(), x, mode="jit")
    with pytest.raises(ValueError, match="float32 or float64"):
        assert_bijective_and_finite(tfb.Exp(), x.astype(np.int32))
