"""Concept bottlenecks (igr_tf.concepts, models/cbm.py, `train.py cbm`).

Checked against independent routes: Monte Carlo frequencies of the hard selections (within 3
standard errors, fixed seeds) for the presence probabilities and the samplers, a float64 direct
formula for the union of slots, a literal loop for the contrastive loss, numpy counts for the
reported sparsity, and a save/load round trip for serialization.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import train
from igr_tf import categorical
from igr_tf import concepts as cc
from models import cbm

NAMES = cc.DIGIT_CONCEPTS.concept_names
C = len(NAMES)


def _three_se(freq: np.ndarray, p: np.ndarray, n: int) -> None:
    se = np.sqrt(np.maximum(p * (1 - p), 1e-12) / n)
    assert np.all(np.abs(freq - p) <= 3 * se + 1e-9), (freq, p, se)


# --- the concept table --------------------------------------------------------------------------
def test_digit_table_gives_every_class_a_distinct_attribute_vector():
    table = cc.DIGIT_CONCEPTS
    m = table.matrix
    assert m.shape == (10, C) and set(np.unique(m)) == {0.0, 1.0}
    assert len({tuple(r) for r in m.tolist()}) == 10
    # Spot checks of the documented shapes (the table is written by hand).
    assert table.concepts_of(8)[:2] == ["closed_loop", "two_loops"]
    assert table.concepts_of(1) == ["vertical_stroke", "only_straight_strokes"]
    assert "closed_loop" not in table.concepts_of(7)
    assert table.max_concepts_per_class == int(m.sum(1).max()) == 7
    assert cc.ConceptTable.from_config(json.loads(json.dumps(table.to_config()))) == table


@pytest.mark.parametrize(
    "attributes, fragment",
    [
        (((1, 0), (1, 0), (0, 1)), "distinct"),
        (((1, 0), (0, 1), (2, 1)), "only 0 and 1"),
        (((1, 0, 1), (0, 1, 1)), "shape"),
        (((1, 0), (1, 1), (0, 0)), "at least one concept"),
        (((1, 1), (1, 0)), "present in some class and absent"),
    ],
)
def test_bad_concept_tables_are_rejected(attributes, fragment):
    classes = ("a", "b", "c")[: len(attributes)]
    with pytest.raises(ValueError, match=fragment):
        cc.ConceptTable(classes, ("x", "y"), attributes)


# --- samplers and presence probabilities ---------------------------------------------------------
@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
def test_hard_samples_follow_the_induced_categorical(relaxation):
    rng = np.random.default_rng(1)
    n = 20_000
    if relaxation == "gs":
        params = tf.constant(rng.normal(size=4), tf.float64)
        pmf = tf.nn.softmax(params).numpy()
    else:
        params = tf.constant(rng.normal(size=6), tf.float64)  # 3 locations, 3 raw scales
        loc, raw = np.split(params.numpy(), 2)
        scale = np.log1p(np.exp(raw)) + 1e-4
        pmf = np.exp(categorical.igr_i_log_pmf(loc, scale, num_nodes=128).numpy())
    draws = cc.relaxed_one_hot(
        tf.broadcast_to(params, [n, params.shape[0]]), 0.5, relaxation, hard=True, seed=[7, 8]
    ).numpy()
    assert set(np.unique(draws)) == {0.0, 1.0} and np.all(draws.sum(-1) == 1)
    _three_se(draws.mean(0), pmf, n)
    # The presence probabilities' categorical is the same law.
    np.testing.assert_allclose(np.exp(cc.categorical_log_pmf(params, relaxation)), pmf, atol=2e-3)


@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
@pytest.mark.parametrize("presence", ["pairwise", "exact"])
def test_presence_probabilities_match_monte_carlo(relaxation, presence):
    # 3 slots over 3 concepts and "none". pairwise: P(concept beats "none" in some slot), from
    # the perturbed scores; exact: P(some slot selects the concept), from the hard samples.
    rng = np.random.default_rng(2)
    n = 20_000
    raw = rng.normal(size=(3, 3 if relaxation == "gs" else 6))
    if relaxation == "gs":
        raw = np.concatenate([raw, np.zeros((3, 1))], -1)
    params = tf.constant(raw, tf.float64)
    log_p, log_not = cc.union_log_probs(*cc.slot_presence_log_probs(params, relaxation, presence))
    np.testing.assert_allclose(np.exp(log_p) + np.exp(log_not), 1.0, atol=1e-12)
    seed = tf.constant([3, 4])
    if presence == "exact":
        hard = cc.relaxed_one_hot(
            tf.broadcast_to(params, [n, *raw.shape]), 1.0, relaxation, True, seed
        )
        hits = 1 - np.prod(1 - hard.numpy()[..., :-1], axis=-2)
    elif relaxation == "gs":
        u = tf.random.stateless_uniform([n, *raw.shape], seed, dtype=tf.float64).numpy()
        g = -np.log(-np.log(u))
        score = raw + g
        hits = 1 - np.prod(score[..., :-1] <= score[..., -1:], axis=-2)
    else:
        loc, r = np.split(raw, 2, axis=-1)
        eps = tf.random.stateless_normal([n, *loc.shape], seed, dtype=tf.float64).numpy()
        z = loc + (np.log1p(np.exp(r)) + 1e-4) * eps
        hits = 1 - np.prod(z <= 0, axis=-2)
    _three_se(hits.mean(0), np.exp(log_p.numpy()), n)


def test_union_of_slots_against_float64_and_at_underflow():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.01, 0.99, size=(5, 4, 6))
    log_p, log_not = cc.union_log_probs(tf.math.log(p), tf.math.log1p(-p))
    np.testing.assert_allclose(np.exp(log_p), 1 - np.prod(1 - p, axis=-2), rtol=1e-12)
    np.testing.assert_allclose(np.exp(log_not), np.prod(1 - p, axis=-2), rtol=1e-12)
    # p = e^-200 underflows in float32: log π = log(4 e^-200), finite, with gradient 1/4 each.
    tiny = tf.Variable(tf.fill([4, 2], tf.constant(-200.0)))
    with tf.GradientTape() as tape:
        lp, _ = cc.union_log_probs(tiny, tf.zeros_like(tiny) - tf.exp(tiny))
    np.testing.assert_allclose(lp.numpy(), -200.0 + np.log(4.0), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(lp, tiny).numpy(), 0.25, rtol=1e-5)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
def test_straight_through_is_exactly_one_hot_with_finite_gradients_at_extremes(dtype, relaxation):
    logits = tf.constant([[50.0, -50.0, 0.0, 10.0], [-50.0, -50.0, -50.0, 0.0]], dtype)
    params = tf.Variable(logits if relaxation == "gs" else tf.concat([logits[:, :3]] * 2, -1))
    with tf.GradientTape() as tape:
        psi = cc.relaxed_one_hot(params, 0.01, relaxation, hard=True, seed=[1, 2])
        loss = tf.reduce_sum(psi * tf.constant([1.0, 2.0, 3.0, 4.0], dtype))
    values = psi.numpy()
    assert set(np.unique(values)) <= {0.0, 1.0} and np.all(values.sum(-1) == 1)
    grad = tape.gradient(loss, params).numpy()
    assert np.all(np.isfinite(grad))
    soft = cc.relaxed_one_hot(params, 0.01, relaxation, hard=False, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(np.argmax(soft, -1), np.argmax(values, -1))


# --- losses and metrics ---------------------------------------------------------------------------
def test_contrastive_loss_against_a_literal_loop():
    rng = np.random.default_rng(4)
    a = np.maximum(rng.normal(size=(6, C)), 0)
    a[2] = 0.0  # an image with no active concept: cosine 0 with every class
    y = np.array([0, 3, 3, 8, 0, 1])
    table = cc.DIGIT_CONCEPTS.matrix
    t = 0.1
    cos = np.zeros((6, 10))
    for b in range(6):
        for j in range(10):
            na, nc = np.linalg.norm(a[b]), np.linalg.norm(table[j])
            cos[b, j] = 0.0 if na == 0 else a[b] @ table[j] / (na * nc)
    logits = cos / t
    img = np.mean([-(logits[b, y[b]] - np.log(np.exp(logits[b]).sum())) for b in range(6)])
    per_class = []
    for j in sorted(set(y)):
        col = logits[:, j]
        lse = np.log(np.exp(col).sum())
        per_class.append(np.mean([-(col[b] - lse) for b in range(6) if y[b] == j]))
    expected = 0.5 * (img + np.mean(per_class))
    got = cc.contrastive_loss(tf.constant(a), tf.constant(y), table, t).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-7)  # l2_normalize uses rsqrt
    # The class rows themselves score better than shuffled rows.
    good = cc.contrastive_loss(tf.constant(table[y]), tf.constant(y), table, t)
    assert good < cc.contrastive_loss(tf.constant(table[(y + 1) % 10]), tf.constant(y), table, t)


def test_nonzero_share_and_top_concepts():
    a = np.array([[0.0, 2.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(cc.nonzero_share(a).numpy(), [0.5, 0.0])
    names = ("w", "x", "y", "z")
    assert cc.top_concepts(a, names, k=3) == [[("x", 2.0), ("y", 0.5)], []]


# --- the layer ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["gumbel", "igr"])
def test_slot_modes_are_exactly_sparse_with_straight_through_at_low_temperature(mode, dtype):
    layer = cc.ConceptBottleneck(NAMES, mode, temperature=0.01, num_slots=3, seed=0, dtype=dtype)
    e = tf.constant(np.random.default_rng(5).normal(0, 20, size=(64, 16)), dtype)  # big logits
    with tf.GradientTape() as tape:
        out = layer(e, training=True)
        loss = tf.reduce_sum(out["concepts"] * tf.range(C, dtype=dtype)) - tf.reduce_sum(
            out["log_presence"]
        )
    a = out["concepts"].numpy()
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert np.count_nonzero(a, axis=1).max() <= 3
    for v in out.values():
        assert np.all(np.isfinite(v.numpy()))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    assert np.abs(grads[0].numpy()).sum() > 0
    # Inference: the noise-free choice (deterministic) and one exact sample, both 0/1.
    first, second = layer(e)["concepts"].numpy(), layer(e)["concepts"].numpy()
    np.testing.assert_array_equal(first, second)
    assert set(np.unique(first)) <= {0.0, 1.0}
    sampler = cc.ConceptBottleneck.from_config(dict(layer.get_config(), inference="sample"))
    sampler.build(e.shape)
    drawn = sampler(e, seed=[1, 1])["concepts"].numpy()
    assert set(np.unique(drawn)) <= {0.0, 1.0} and np.count_nonzero(drawn, axis=1).max() <= 3


def test_soft_selection_is_not_exactly_sparse():
    layer = cc.ConceptBottleneck(NAMES, "gumbel", temperature=1.0, num_slots=3, hard=False, seed=0)
    a = layer(tf.random.stateless_normal([32, 16], [0, 1]), training=True)["concepts"].numpy()
    assert np.all((a >= 0) & (a <= 1)) and np.mean((a > 0) & (a < 1)) > 0.5


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(mode="dense"), "`mode` must be one of"),
        (dict(temperature=0.0), "`temperature` must be a finite number > 0"),
        (dict(num_slots=0), "`num_slots` must be an integer >= 1"),
        (dict(inference="argmax"), "`inference` must be one of"),
        (dict(presence="mc"), "`presence` must be one of"),
        (dict(concept_names=("a", "a")), "`concept_names` must be non-empty and unique"),
    ],
)
def test_bad_layer_arguments_raise_naming_them(kwargs, fragment):
    args = {"concept_names": NAMES, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        cc.ConceptBottleneck(**args)


def test_bad_model_weights_raise_naming_them():
    with pytest.raises(ValueError, match="`l1_weight` must be ≥ 0"):
        cbm.ConceptBottleneckModel(cc.DIGIT_CONCEPTS, "l1", l1_weight=-1.0)


def test_layer_round_trips_through_model_save(tmp_path):
    inputs = keras.Input((16,))
    out = cc.ConceptBottleneck(NAMES, "igr", temperature=0.3, num_slots=4, seed=3)(inputs)
    logits = keras.layers.Dense(10)(out["concepts"])
    model = keras.Model(inputs, [logits, out["concepts"], out["log_presence"]])
    x = np.random.default_rng(6).normal(size=(8, 16)).astype(np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for before, after in zip(model(x), loaded(x), strict=True):
        np.testing.assert_array_equal(before.numpy(), after.numpy())
    layer = [la for la in loaded.layers if isinstance(la, cc.ConceptBottleneck)][0]
    assert layer.get_config()["mode"] == "igr" and layer.concept_names == NAMES


# --- the model: each mode trains and reports its sparsity ----------------------------------------
def _synthetic(n: int = 400, dim: int = 16, seed: int = 0):
    """Embeddings that carry the class: a class centre plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    centres = rng.normal(0, 3, size=(10, dim))
    x = centres[y] + rng.normal(0, 0.5, size=(n, dim))
    return x.astype(np.float32), y.astype(np.int32)


@pytest.fixture(scope="module")
def trained():
    x, y = _synthetic()
    models, histories = {}, {}
    for mode in cc.MODES:
        keras.utils.set_random_seed(0)
        model = cbm.ConceptBottleneckModel(
            cc.DIGIT_CONCEPTS, mode, input_shape=(16,), num_slots=5, seed=0
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
        history = model.fit(x, y, batch_size=100, epochs=15, verbose=0)
        models[mode], histories[mode] = model, history.history
    return x, y, models, histories


@pytest.mark.parametrize("mode", cc.MODES)
def test_each_mode_trains_and_reaches_its_reported_sparsity(trained, mode):
    x, y, models, histories = trained
    model, history = models[mode], histories[mode]
    assert history["loss"][-1] < history["loss"][0]
    report = model.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)
    assert report["accuracy"] > 0.8  # chance is 0.1
    a = model.concepts(x)["concepts"].numpy()
    counted = np.count_nonzero(a, axis=1) / C
    assert report["sparsity"] == pytest.approx(counted.mean(), abs=1e-6)
    assert 0 < counted.mean() < 1
    table_rows = cc.DIGIT_CONCEPTS.matrix[y]
    agreement = np.mean((a > 0) == (table_rows > 0))
    assert report["concept_accuracy"] == pytest.approx(agreement, abs=1e-6)
    if model.bottleneck.sparse:
        assert set(np.unique(a)) <= {0.0, 1.0} and np.count_nonzero(a, axis=1).max() <= 5


def test_l1_penalty_makes_activations_sparser():
    x, y = _synthetic(seed=1)
    shares = []
    for weight in (0.0, 3.0):
        keras.utils.set_random_seed(0)
        model = cbm.ConceptBottleneckModel(
            cc.DIGIT_CONCEPTS, "l1", input_shape=(16,), l1_weight=weight, concept_weight=0.0
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
        model.fit(x, y, batch_size=100, epochs=12, verbose=0)
        shares.append(cc.nonzero_share(model.concepts(x)["concepts"]).numpy().mean())
    assert shares[1] < 0.5 * shares[0], shares


@pytest.mark.parametrize("mode", ["l1", "igr"])
def test_trained_model_round_trips_through_model_save(trained, mode, tmp_path):
    x, _, models, _ = trained
    path = str(tmp_path / f"{mode}.keras")
    models[mode].save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, cbm.ConceptBottleneckModel) and loaded.mode == mode
    np.testing.assert_array_equal(models[mode](x).numpy(), loaded(x).numpy())


def test_model_with_an_image_encoder_round_trips(tmp_path):
    encoder = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(8)]
    )
    model = cbm.ConceptBottleneckModel(
        cc.DIGIT_CONCEPTS, "gumbel", input_shape=(28, 28, 1), encoder=encoder, seed=1
    )
    assert not model.encoder.trainable and len(model.trainable_weights) == 3  # layer + head
    images = np.random.default_rng(7).uniform(size=(4, 28, 28, 1)).astype(np.float32)
    path = str(tmp_path / "with_encoder.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model(images).numpy(), loaded(images).numpy())


# --- data and the command line --------------------------------------------------------------------
def test_labelled_mnist_sample_matches_the_packaged_split():
    data = cbm.load_labelled_mnist_sample()
    assert data.x_train.shape == (3600, 28, 28, 1) and data.x_test.shape == (400, 28, 28, 1)
    assert set(np.unique(data.x_test)) == {0.0, 1.0}
    np.testing.assert_array_equal(np.bincount(data.y_test, minlength=10), 40)
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=10), 360)


def test_train_modes_are_the_layer_modes():
    assert train.CBM_MODES == cc.MODES


def test_train_cbm_writes_accuracy_and_sparsity(tmp_path, capsys):
    out = str(tmp_path / "cbm")
    argv = ["cbm", "--mode", "igr", "--epochs", "1", "--encoder-epochs", "1", "--no-jit"]
    assert train.main([*argv, "--verbose", "0", "--out", out]) == 0
    capsys.readouterr()
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    m = res["metrics"]
    # One epoch on the packaged sample need not beat chance (0.08 with the current noise stream):
    # that the modes learn is test_each_mode_trains_and_reaches_its_reported_sparsity's claim.
    assert 0 <= m["test_accuracy"] <= 1 and 0 < m["test_sparsity"] <= 7 / C
    assert m["test_active_concepts"] == pytest.approx(m["test_sparsity"] * C)
    assert res["flags"]["mode"] == "igr" and m["num_slots"] == 7
    assert len(res["examples"]) == 10 and all(len(e["concepts"]) <= 7 for e in res["examples"])
    assert os.path.exists(os.path.join(out, "model.keras"))
