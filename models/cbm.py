"""Concept bottleneck model: frozen image encoder → ConceptBottleneck → linear head.

```none
image ─ encoder (frozen) ─▶ e ∈ R^D ─ ConceptBottleneck(mode) ─▶ a ∈ R^C ─ linear head ─▶ logits
loss = CE(head(a), y) + w_c · concept loss + mode term
       concept loss: BCE(P(concept present), table[y])   (concept supervision, class level)
       mode term: "l1" λ₁ · mean_c a_c;  "contrastive" w · InfoNCE(a, table);  "gumbel"/"igr" none
```

The paper's backbone (CLIP) cannot be fetched here. `pretrain_encoder` trains a small image
encoder here instead (an MLP classifier on the training images, then frozen: "linear probing" of
its embedding, as the paper probes CLIP's), and the concept names come from a class-level concept
table (`igr_tf.concepts.DIGIT_CONCEPTS` for MNIST) through the BCE term. The head has no bias, as
in the paper.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from igr_tf import concepts as cc
from igr_tf import datasets
from igr_tf._checks import positive_float
from igr_tf._ops import plain_tensorflow

__all__ = [
    "DEFAULT_WEIGHTS",
    "ConceptBottleneckModel",
    "LabelledImages",
    "load_labelled_mnist_sample",
    "pretrain_encoder",
]

#: Loss weights chosen here (the paper's ℓ1 weight 1e-3 acts on CBL weights, not activations).
DEFAULT_WEIGHTS: dict[str, float] = {
    "concept_weight": 1.0,
    "l1_weight": 0.1,
    "contrastive_weight": 1.0,
    "contrastive_temperature": 0.1,
}


class LabelledImages:
    """Images ``[N, 28, 28, 1]`` float32 in {0, 1} and labels ``[N]`` int32, train and test."""

    def __init__(self, x_train, y_train, x_test, y_test) -> None:
        self.x_train, self.y_train = x_train, y_train
        self.x_test, self.y_test = x_test, y_test


def load_labelled_mnist_sample() -> LabelledImages:
    """The packaged ``mnist_sample`` (3,600 train / 400 test) with its digit labels.

    Images come from ``igr_tf.datasets.load("mnist_sample")``; the labels from the same npz file,
    in the same order (its ``train_index``/``test_index``). Never runs code (no pickle).
    """
    data = datasets.load("mnist_sample")
    ref = resources.files("igr_tf").joinpath("resources/mnist_sample.npz")
    with ref.open("rb") as fh, np.load(fh, allow_pickle=False) as f:
        labels = f["labels"].astype(np.int32)
        train_index, test_index = f["train_index"], f["test_index"]

    def stack(ds: tf.data.Dataset) -> np.ndarray:
        return np.concatenate([b.numpy() for b in ds.batch(1000)], axis=0)

    return LabelledImages(
        stack(data.train), labels[train_index], stack(data.test), labels[test_index]
    )


def pretrain_encoder(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    num_classes: int = 10,
    embedding_dim: int = 64,
    hidden: int = 256,
    epochs: int = 5,
    batch_size: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[keras.Sequential, keras.Sequential]:
    """Trains an MLP image classifier; returns ``(encoder, classifier)``, the encoder frozen.

    ``encoder``: Flatten → Dense(hidden, relu) → Dense(embedding_dim, relu), the embedding the
    concept bottleneck sees; ``classifier`` = encoder → Dense(num_classes) (the black-box
    reference accuracy). The encoder is set non-trainable afterwards.
    """
    keras.utils.set_random_seed(seed)
    encoder = keras.Sequential(
        [
            keras.Input(x_train.shape[1:]),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(embedding_dim, activation="relu"),
        ],
        name="encoder",
    )
    classifier = keras.Sequential([encoder, keras.layers.Dense(num_classes)], name="classifier")
    classifier.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    classifier.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    encoder.trainable = False
    return encoder, classifier


@keras.saving.register_keras_serializable(package="models")
class ConceptBottleneckModel(keras.Model):
    """Encoder (optional, frozen) → :class:`igr_tf.concepts.ConceptBottleneck` → linear head.

    Args:
      table: the concept table (classes, concept names, class × concept attributes).
      mode: "l1", "contrastive", "gumbel" (Sparse-CBM) or "igr" (IGR-I relaxed selection).
      input_shape: shape of one input (an image when ``encoder`` is given, else an embedding).
      encoder: a Keras model mapping inputs to embeddings; frozen (not trained) here. None: the
        inputs are embeddings.
      temperature, num_slots, hard, inference, presence, seed: of the bottleneck layer (slot
        modes). ``num_slots=None``: the table's largest number of concepts per class.
      concept_weight: weight of the concept supervision (0 disables it): the BCE of the layer's
        concept-presence probabilities against the true class's table row.
      l1_weight: "l1" mode's weight of ``mean_c a_c``.
      contrastive_weight, contrastive_temperature: "contrastive" mode's InfoNCE weight and T.

    Fit on ``(inputs, labels)``. Metrics: loss, ce, concept (BCE), penalty (the mode term),
    accuracy, sparsity (share of non-zero concept activations per image) and concept_accuracy
    (agreement of ``a > 0`` with the true class's table row).
    """

    def __init__(
        self,
        table: cc.ConceptTable | dict,
        mode: str = "gumbel",
        input_shape: tuple[int, ...] = (64,),
        encoder: keras.Model | dict | None = None,
        temperature: float = cc.DEFAULT_TEMPERATURE,
        num_slots: int | None = None,
        hard: bool = True,
        inference: str = "mode",
        presence: str = "pairwise",
        concept_weight: float = DEFAULT_WEIGHTS["concept_weight"],
        l1_weight: float = DEFAULT_WEIGHTS["l1_weight"],
        contrastive_weight: float = DEFAULT_WEIGHTS["contrastive_weight"],
        contrastive_temperature: float = DEFAULT_WEIGHTS["contrastive_temperature"],
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.table = (
            table if isinstance(table, cc.ConceptTable) else cc.ConceptTable.from_config(table)
        )
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        self.encoder = encoder
        if self.encoder is not None:
            self.encoder.trainable = False
        for name, value in (
            ("concept_weight", concept_weight),
            ("l1_weight", l1_weight),
            ("contrastive_weight", contrastive_weight),
        ):
            if not float(value) >= 0:
                raise ValueError(f"`{name}` must be ≥ 0; got {value!r}.")
        self.concept_weight = float(concept_weight)
        self.l1_weight = float(l1_weight)
        self.contrastive_weight = float(contrastive_weight)
        self.contrastive_temperature = positive_float(
            contrastive_temperature, "contrastive_temperature"
        )
        slots = self.table.max_concepts_per_class if num_slots is None else num_slots
        self.bottleneck = cc.ConceptBottleneck(
            self.table.concept_names,
            mode,
            temperature,
            slots,
            hard=hard,
            inference=inference,
            presence=presence,
            seed=seed,
            name="bottleneck",
        )
        self.head = keras.layers.Dense(len(self.table.class_names), use_bias=False, name="head")
        self.model_input_shape = tuple(int(d) for d in input_shape)
        self._config = dict(
            table=self.table.to_config(),
            mode=mode,
            input_shape=self.model_input_shape,
            temperature=temperature,
            num_slots=num_slots,
            hard=hard,
            inference=inference,
            presence=presence,
            concept_weight=concept_weight,
            l1_weight=l1_weight,
            contrastive_weight=contrastive_weight,
            contrastive_temperature=contrastive_temperature,
            seed=seed,
        )
        self._class_concepts = tf.constant(self.table.matrix)
        self.trackers = {
            n: keras.metrics.Mean(name=n)
            for n in (
                "loss",
                "ce",
                "concept",
                "penalty",
                "accuracy",
                "sparsity",
                "concept_accuracy",
            )
        }
        self.build((None, *self.model_input_shape))

    @property
    def mode(self) -> str:
        return self.bottleneck.mode

    def build(self, input_shape) -> None:
        if self.encoder is not None:
            self.encoder.build(input_shape)
            dim = self.encoder.compute_output_shape(input_shape)[-1]
        else:
            dim = input_shape[-1]
        self.bottleneck.build((None, dim))
        self.head.build((None, self.bottleneck.num_concepts))
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    # --- forward ------------------------------------------------------------------------------
    def embed(self, x) -> tf.Tensor:
        return x if self.encoder is None else self.encoder(x, training=False)

    def concepts(self, x, training=None, seed=None) -> dict[str, tf.Tensor]:
        """The bottleneck's outputs (concepts, log_presence, log_absence), each ``[B, C]``."""
        return self.bottleneck(self.embed(x), training=training, seed=seed)

    def call(self, x, training=None):
        """Class logits ``[B, classes]``."""
        return self.head(self.concepts(x, training=training)["concepts"])

    @plain_tensorflow  # also called directly inside users' tf.functions
    def objective(self, x, y, training=None) -> dict[str, tf.Tensor]:
        """Per-example terms ``[B]`` (the contrastive term is per batch, broadcast)."""
        out = self.concepts(x, training=training)
        a = out["concepts"]
        logits = self.head(a)
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        targets = tf.gather(tf.cast(self._class_concepts, a.dtype), y)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        concept = cc.presence_bce(out["log_presence"], out["log_absence"], targets)
        if self.mode == "l1":
            penalty = self.l1_weight * tf.reduce_mean(a, axis=-1)
        elif self.mode == "contrastive":
            value = cc.contrastive_loss(a, y, self._class_concepts, self.contrastive_temperature)
            penalty = self.contrastive_weight * value * tf.ones_like(ce)
        else:
            penalty = tf.zeros_like(ce)
        predicted = tf.cast(tf.argmax(logits, axis=-1), tf.int32)
        active = tf.cast(a > 0, a.dtype)
        return {
            "loss": ce + self.concept_weight * concept + penalty,
            "ce": ce,
            "concept": concept,
            "penalty": penalty,
            "accuracy": tf.cast(tf.equal(predicted, y), a.dtype),
            "sparsity": cc.nonzero_share(a),
            "concept_accuracy": tf.reduce_mean(tf.cast(tf.equal(active, targets), a.dtype), -1),
        }

    def _update(self, terms) -> dict[str, tf.Tensor]:
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            terms = self.objective(x, y, training=True)
            loss = tf.reduce_mean(terms["loss"])
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
        return self._update(terms)

    def test_step(self, data):
        return self._update(self.objective(data[0], data[1], training=False))

    # --- serialization ------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = dict(super().get_config(), **self._config)
        if self.encoder is not None:
            config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
