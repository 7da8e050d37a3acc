"""igr_tf.relaxed_one_hot: the one-line API, with PyTorch's meaning of `hard`."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import igr_tf
from igr_tf.distributions import relaxations
from igr_tf.layers import DiscreteLatent


@pytest.mark.parametrize("name", ["igr_i", "igr_sb", "gs"])
def test_relaxed_one_hot_is_the_layers_sample_for_the_same_seed(name):
    k = 5
    layer = DiscreteLatent(name, num_vars=3, num_categories=k, temperature=0.4, seed=2)
    params = np.random.default_rng(0).normal(size=(4, 3, layer.relaxation.num_params))
    params = params.astype(np.float32)
    seed = tf.cast(layer.seed_generator.state, tf.int32)  # what the layer's first call uses
    psi = igr_tf.relaxed_one_hot(params, 0.4, name, seed=seed)
    assert psi.shape == (4, 3, k) and psi.dtype == tf.float32
    np.testing.assert_array_equal(psi, layer(params)["sample"])


@pytest.mark.parametrize("name", ["igr_i", "igr_sb", "gs"])
def test_hard_means_straight_through(name):
    params = tf.constant(np.random.default_rng(1).normal(size=(6, 8)), tf.float32)
    coef = tf.constant(np.random.default_rng(2).normal(size=(6, 5)), tf.float32)
    params_in = params if name != "gs" else params[:, :5]
    grads, values = [], []
    for hard in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(params_in)
            psi = igr_tf.relaxed_one_hot(params_in, 0.3, name, hard=hard, seed=(4, 2))
            loss = tf.reduce_sum(psi * coef)
        values.append(psi.numpy())
        grads.append(tape.gradient(loss, params_in).numpy())
    relaxed, one_hot = values
    assert np.all((one_hot == 0) | (one_hot == 1)) and np.all(one_hot.sum(-1) == 1)
    np.testing.assert_array_equal(np.argmax(one_hot, -1), np.argmax(relaxed, -1))
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6)


def test_dtypes_and_options():
    params = np.zeros((2, 4), np.float64)
    assert igr_tf.relaxed_one_hot(params, 0.5, seed=1).dtype == tf.float64
    half = igr_tf.relaxed_one_hot(params.astype(np.float16), 0.01, seed=1)
    assert half.dtype == tf.float16 and np.all(np.isfinite(half.numpy()))
    # z ~ N(0, 0.69²): four sticks cover half the stick except with probability 2e-7 per row
    # (Monte Carlo; two sticks fail 2.7% of rows, so a bound at two passed by the seed's luck).
    sticks = np.zeros((20, 10))
    sb = igr_tf.relaxed_one_hot(sticks, 0.5, "igr_sb", seed=1, adaptive=True, threshold=0.5)
    assert np.all(sb.numpy()[:, 5:] == 0.0)  # categories cut by the adaptive truncation
    r = relaxations.get("igr_i", 3, delta=2.0)
    np.testing.assert_allclose(
        igr_tf.relaxed_one_hot(params, 0.5, r, seed=3), r.draw(params, 0.5, seed=3).sample
    )


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="even number"):
        igr_tf.relaxed_one_hot(np.zeros((2, 3), np.float32), 0.5, "igr_i")
    with pytest.raises(ValueError, match="temperature"):
        igr_tf.relaxed_one_hot(np.zeros((2, 4), np.float32), -1.0)
    for relaxation in ("igr_i", "gs"):  # an infinite τ gives a uniform sample: refused
        with pytest.raises(ValueError, match="`temperature` must be > 0 and finite"):
            igr_tf.relaxed_one_hot(np.zeros((2, 4), np.float32), float("inf"), relaxation)
    with pytest.raises(ValueError, match="`params` needs"):
        igr_tf.relaxed_one_hot(np.float32(1.0), 0.5)
    with pytest.raises(ValueError, match="Unknown relaxation"):
        igr_tf.relaxed_one_hot(np.zeros((2, 4), np.float32), 0.5, "gumbel")
    with pytest.raises(ValueError, match="flow weights"):
        igr_tf.relaxed_one_hot(np.zeros((2, 4), np.float32), 0.5, "igr_planar")
    with pytest.raises(ValueError, match="options"):
        igr_tf.relaxed_one_hot(np.zeros((2, 4)), 0.5, relaxations.get("igr_i", 3), delta=2.0)
