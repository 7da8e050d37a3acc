r"""Concept bottlenecks: an embedding → named concept activations → a linear classifier.

A concept bottleneck model (CBM) predicts a class only through a vector of *concept activations*
``a ∈ R^C``, one per named, human-readable concept ("has a closed loop", ...), so each prediction
can be read as "these concepts were present". Semenov, Ivanov, Beznosikov & Gasnikov ("Sparse
Concept Bottleneck Models: Gumbel Tricks in Contrastive Learning", 2024) put a concept bottleneck
layer (CBL) on a frozen multimodal encoder (CLIP) and a linear head trained with cross-entropy on
it, and train the CBL in one of three ways: with an ℓ1 penalty, a contrastive loss, or a loss built
on Gumbel-Softmax samples, which makes the concept activations sparse (Sparse-CBM).

:class:`ConceptBottleneck` is that layer, for any embedding ``e ∈ R^D``. Its ``mode`` picks how
the activations are made:

- ``"l1"``: ``s = W e + b``, ``a = relu(s)``; the model adds ``λ₁ · mean_c a_c`` (ℓ1 of the
  activations) to the loss.
- ``"contrastive"``: the same ``a = relu(s)``; the model adds a CLIP-style symmetric InfoNCE loss
  between the images' concept vectors and the classes' concept vectors (see
  :func:`contrastive_loss`).
- ``"gumbel"`` (Sparse-CBM): ``S`` *slots*, each a Gumbel-Softmax relaxed one-hot over ``C + 1``
  categories, the ``C`` concepts and one "no concept", with logits ``[s_v, 0]``; the activation is
  the union of the slots' selections, ``a = 1 − Π_v (1 − ψ_v[:C])``. So at most ``S`` concepts are
  active per image.
- ``"igr"`` (new here): the same selection with IGR-I instead of Gumbel-Softmax:
  ``ψ_v = softmax([z_v/τ, log δ])``, ``z_v ~ N(μ_v, σ_v²)`` on ``R^C``; IGR-I's fixed last
  category (``log δ = 0``) is the "no concept" category.

With ``hard=True`` (straight-through; the default) the slots' forward values are exactly one-hot,
so ``a`` is exactly a 0/1 vector with at most ``S`` ones, and the gradient is the relaxed
sample's. At inference (``training=False``) each slot takes its noise-free choice
(``argmax [s_v, 0]`` for GS, ``argmax [μ_v, 0]`` for IGR-I; ``inference="mode"``), or one exact
one-hot sample (``inference="sample"``).

For concept supervision with a concept table (:class:`ConceptTable`) the layer also returns
``log P(concept present)`` and its complement. ``"l1"``/``"contrastive"``: ``sigmoid(s)``. Slot
modes: the probability that *some* slot has the concept, ``π_c = 1 − Π_v (1 − p_v(c))``, where
``p_v(c)`` is, with ``presence="pairwise"`` (the default), the closed-form probability that the
concept's perturbed score beats the "no concept" category's in slot v: ``sigmoid(s_vc)`` for GS
(the difference of two Gumbels is logistic), ``Φ(μ_vc / σ_vc)`` for IGR-I (``z_vc > log δ = 0``);
an upper bound on the chance that slot v *selects* c. With ``presence="exact"`` it is that chance,
``q_v(c)``, the categorical slot v induces: ``softmax`` for GS, IGR-I's by quadrature
(:func:`igr_tf.categorical.igr_i_log_pmf`: O(C² · nodes) float64 work per slot, about a hundred
times the cost of "pairwise" in a training step).

How this differs from the paper, and why:

- The paper's CBL is linear and stays dense; its Gumbel objective is a loss on the CBL outputs
  (``−mean log GS(s)`` along the concept and the batch axes) and its ℓ1 penalises the CBL's
  *weights*. Here the relaxed sample is in the forward pass (so the activations are exactly
  sparse with straight-through) and the ℓ1 acts on the activations (so it can make them zero).
- The paper's concepts are named through CLIP's text encoder (CBL inputs are image-concept
  similarities). Without CLIP, concept names come from concept supervision: a class-level
  attribute table (as CUB's and AwA's class-attribute matrices are used in CBMs; Koh et al. 2020),
  see :data:`DIGIT_CONCEPTS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from igr_tf._checks import check_positive_int, positive_float
from igr_tf.bijectors import SoftmaxPlusPlus
from igr_tf.distributions import relaxations
from igr_tf.functional import relaxed_one_hot
from igr_tf.names import CBM_MODES
from igr_tf.paper import CBM_TEMPERATURE

tfd = tfp.distributions

__all__ = [
    "DEFAULT_TEMPERATURE",
    "DIGIT_CONCEPTS",
    "INFERENCE",
    "MODES",
    "PRESENCE",
    "ConceptBottleneck",
    "ConceptTable",
    "categorical_log_pmf",
    "contrastive_loss",
    "inclusion_log_probs",
    "slot_presence_log_probs",
    "union_log_probs",
    "nonzero_share",
    "noise_free_one_hot",
    "presence_bce",
    "relaxed_one_hot",
    "top_concepts",
]

#: Training modes of the concept bottleneck layer; "gumbel" and "igr" are the sparse slot modes.
MODES: tuple[str, ...] = CBM_MODES
#: Inference choices of the slot modes: noise-free argmax per slot, or one exact one-hot sample.
INFERENCE: tuple[str, ...] = ("mode", "sample")
#: Presence probabilities of the slot modes: "beats the null category" (closed form) or exact.
PRESENCE: tuple[str, ...] = ("pairwise", "exact")
#: The slot modes' relaxation in the registry's names.
_RELAXATION = {"gumbel": "gs", "igr": "igr_i"}
#: Default relaxation temperature of the slot modes (the Sparse-CBM code's default τ = 1).
DEFAULT_TEMPERATURE = CBM_TEMPERATURE
_SOFTPLUS_INV_ONE = float(np.log(np.expm1(1.0)))
#: Below this total (in log space) the union's probability is computed from its first-order sum.
_SMALL_LOG_ABSENCE = -1e-6


# --------------------------------------------------------------------------------------------------
# Concept tables


@dataclasses.dataclass(frozen=True)
class ConceptTable:
    """Named classes, named concepts and a binary class × concept attribute matrix.

    ``attributes[k, c] = 1`` means "class k has concept c". Used to supervise concept activations
    at class level (every image of a class gets its class's row), as CUB/AwA attribute tables are.

    Raises ValueError unless the matrix is binary, of shape [classes, concepts], names are unique,
    every class has a distinct, non-empty attribute vector and every concept is present in some
    class and absent from another (a constant concept carries no information).
    """

    class_names: tuple[str, ...]
    concept_names: tuple[str, ...]
    attributes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        matrix = np.asarray(self.attributes)
        k, c = len(self.class_names), len(self.concept_names)
        if matrix.shape != (k, c):
            raise ValueError(
                f"`attributes` must have shape [classes, concepts] = [{k}, {c}]; "
                f"got {list(matrix.shape)}."
            )
        if not np.isin(matrix, (0, 1)).all():
            raise ValueError("`attributes` must hold only 0 and 1.")
        for what, names in (
            ("class_names", self.class_names),
            ("concept_names", self.concept_names),
        ):
            if len(set(names)) != len(names):
                raise ValueError(f"`{what}` must be unique; got {list(names)}.")
        rows = {tuple(r) for r in matrix.tolist()}
        if len(rows) != k:
            raise ValueError("every class needs a distinct attribute vector (two rows are equal).")
        if (matrix.sum(axis=1) == 0).any():
            raise ValueError("every class needs at least one concept (a row is all zeros).")
        used = matrix.sum(axis=0)
        if ((used == 0) | (used == k)).any():
            raise ValueError("every concept must be present in some class and absent from another.")

    @property
    def matrix(self) -> np.ndarray:
        """The attributes as a float32 array [classes, concepts]."""
        return np.asarray(self.attributes, dtype=np.float32)

    @property
    def max_concepts_per_class(self) -> int:
        """The largest number of concepts any class has (slots needed to select them all)."""
        return int(self.matrix.sum(axis=1).max())

    def concepts_of(self, class_index: int) -> list[str]:
        """Names of the concepts class ``class_index`` has."""
        return [
            n for n, on in zip(self.concept_names, self.attributes[class_index], strict=True) if on
        ]

    def to_config(self) -> dict[str, Any]:
        return dict(
            class_names=list(self.class_names),
            concept_names=list(self.concept_names),
            attributes=[list(r) for r in self.attributes],
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConceptTable:
        return cls(
            tuple(config["class_names"]),
            tuple(config["concept_names"]),
            tuple(tuple(int(v) for v in r) for r in config["attributes"]),
        )


def _digit_table() -> ConceptTable:
    concepts = {
        # concept: the digits whose typical (idealized) handwritten shape has it
        "closed_loop": (0, 6, 8, 9),
        "two_loops": (8,),
        "loop_at_top": (8, 9),
        "loop_at_bottom": (6, 8),
        "vertical_stroke": (1, 4, 9),
        "diagonal_stroke": (2, 7),
        "horizontal_bar": (2, 4, 5, 7),
        "curved_top": (0, 2, 3, 8, 9),
        "curved_bottom": (0, 3, 5, 6, 8),
        "open_to_the_left": (3, 5),
        "sharp_corner": (2, 4, 5, 7),
        "crossing_strokes": (4, 8),
        "only_straight_strokes": (1, 4, 7),
    }
    rows = tuple(tuple(int(d in digits) for digits in concepts.values()) for d in range(10))
    return ConceptTable(tuple(str(d) for d in range(10)), tuple(concepts), rows)


#: A small hand-written table of visual attributes of the ten digits' *typical* shapes (class
#: level, like CUB/AwA attribute tables; not annotated per image). Real handwriting deviates:
#: 4s written closed, 7s with a crossbar, 1s with a flag; such images still get their class's row.
DIGIT_CONCEPTS: ConceptTable = _digit_table()


# --------------------------------------------------------------------------------------------------
# Relaxation calls: the only place that builds relaxed samples (adapt here to the package API).


def _relaxation(params, relaxation: str) -> relaxations.Relaxation:
    k = relaxations.get_class(relaxation).num_categories_for(int(params.shape[-1]))
    return relaxations.get(relaxation, k)


def noise_free_one_hot(params, relaxation: str) -> tf.Tensor:
    """``one_hot(argmax)`` of the noise-free hard logits: ``params`` (GS) or, for IGR-I, the
    softmax++ hard logits at the location, ``[loc, 0]``."""
    params = tf.convert_to_tensor(params)
    if relaxation == "gs":
        logits = params
    else:
        loc, _ = _relaxation(params, relaxation).loc_scale(params)
        logits = SoftmaxPlusPlus(1.0).hard_logits(loc)
    return tf.one_hot(tf.argmax(logits, axis=-1), tf.shape(logits)[-1], dtype=params.dtype)


def categorical_log_pmf(params, relaxation: str) -> tf.Tensor:
    """Log pmf ``[..., V, K]`` of the categorical a slot induces (the law of ``argmax ψ``).

    The relaxation's own `categorical_log_probs`: GS ``log_softmax(logits)``; IGR-I exact, by
    quadrature (``igr_i_log_pmf``).
    """
    params = tf.convert_to_tensor(params)
    return _relaxation(params, relaxation).categorical_log_probs(params)


# --------------------------------------------------------------------------------------------------
# Presence probabilities, losses and metrics


def inclusion_log_probs(log_pmf) -> tuple[tf.Tensor, tf.Tensor]:
    """``(log q_v(c), log(1 − q_v(c)))``, each ``[..., V, K-1]``, from a log pmf ``[..., V, K]``.

    The last of the K categories is "nothing"; ``log(1 − q(c)) = LSE_{j≠c} log q(j)`` has no
    cancellation, so it stays accurate when ``q(c)`` is near 1.
    """
    log_pmf = tf.convert_to_tensor(log_pmf)
    k = log_pmf.shape[-1]
    others = ~tf.eye(k - 1, k, dtype=tf.bool)  # [c, j]: j ≠ c
    neg_inf = tf.constant(-np.inf, log_pmf.dtype)
    masked = tf.where(others, log_pmf[..., None, :], neg_inf)  # [..., V, c, j]
    return log_pmf[..., :-1], tf.reduce_logsumexp(masked, axis=-1)


def slot_presence_log_probs(params, relaxation: str, presence: str = "pairwise"):
    """Per slot ``(log p_v(c), log(1 − p_v(c)))``, each ``[..., V, C]`` (module docstring).

    ``params``: ``[..., V, P]`` as :func:`relaxed_one_hot` takes them, the last category "none".
    """
    params = tf.convert_to_tensor(params)
    if presence == "exact":
        return inclusion_log_probs(categorical_log_pmf(params, relaxation))
    if relaxation == "gs":
        margin = params[..., :-1] - params[..., -1:]  # logistic difference of Gumbels
        return tf.math.log_sigmoid(margin), tf.math.log_sigmoid(-margin)
    loc, scale = _relaxation(params, relaxation).loc_scale(params)
    ratio = loc / scale
    std_normal = tfd.Normal(tf.zeros([], ratio.dtype), tf.ones([], ratio.dtype))
    return std_normal.log_cdf(ratio), std_normal.log_survival_function(ratio)


def union_log_probs(log_p, log_not_p, axis: int = -2) -> tuple[tf.Tensor, tf.Tensor]:
    """``(log π, log(1 − π))`` of "at least one of independent events", ``π = 1 − Π (1 − p)``.

    ``log(1 − π) = Σ log(1 − p)`` and ``log π = log(−expm1(log(1 − π)))``; where ``1 − π`` rounds
    to 1 (every p below ~1e-6) the first-order ``log π ≈ LSE log p`` is used instead (relative
    error below 1e-6), which keeps ``log π`` and its gradient finite when the p's underflow.
    """
    log_absent = tf.reduce_sum(log_not_p, axis=axis)
    small = log_absent > _SMALL_LOG_ABSENCE
    safe = tf.where(small, -tf.ones_like(log_absent), log_absent)
    exact = tf.math.log(-tf.math.expm1(safe))
    first_order = tf.reduce_logsumexp(log_p, axis=axis)
    return tf.where(small, first_order, exact), log_absent


def presence_bce(log_present, log_absent, targets) -> tf.Tensor:
    """Binary cross-entropy per example, mean over concepts: ``−mean_c [t log p + (1−t) log(1−p)]``.

    Takes the log-probabilities (never ``log`` of a rounded probability). Returns ``[B]``.
    """
    targets = tf.cast(targets, log_present.dtype)
    return -tf.reduce_mean(targets * log_present + (1.0 - targets) * log_absent, axis=-1)


def contrastive_loss(concepts, labels, class_concepts, temperature: float = 0.1) -> tf.Tensor:
    r"""CLIP-style symmetric InfoNCE between images' and classes' concept vectors (a scalar).

    ``ℓ_bj = cos(a_b, A_j) / T`` for image b's activations ``a_b`` and class j's attribute row
    ``A_j``. Image → class: ``CE(softmax_j ℓ_b, y_b)``; class → image, for each class in the batch:
    ``−mean_{b: y_b = j} log softmax_b(ℓ_·j)`` (several images share a class). The loss is the mean
    of the two directions. An all-zero ``a_b`` has cosine 0 with every class.
    """
    concepts = tf.convert_to_tensor(concepts)
    class_concepts = tf.cast(class_concepts, concepts.dtype)
    a = tf.math.l2_normalize(concepts, axis=-1)
    c = tf.math.l2_normalize(class_concepts, axis=-1)
    logits = tf.matmul(a, c, transpose_b=True) / tf.cast(temperature, concepts.dtype)
    labels = tf.cast(labels, tf.int32)
    image_to_class = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )
    positives = tf.one_hot(labels, tf.shape(c)[0], dtype=concepts.dtype)  # [B, classes]
    log_over_images = tf.nn.log_softmax(logits, axis=0)
    count = tf.reduce_sum(positives, axis=0)
    per_class = -tf.reduce_sum(positives * log_over_images, axis=0) / tf.maximum(count, 1.0)
    present = tf.cast(count > 0, concepts.dtype)
    class_to_image = tf.reduce_sum(per_class * present) / tf.reduce_sum(present)
    return 0.5 * (image_to_class + class_to_image)


def nonzero_share(concepts) -> tf.Tensor:
    """Concept sparsity per image: the share of exactly non-zero activations, ``[B]`` in [0, 1]."""
    concepts = tf.convert_to_tensor(concepts)
    return tf.reduce_mean(tf.cast(tf.not_equal(concepts, 0), concepts.dtype), axis=-1)


def top_concepts(concepts, names: Sequence[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """The ``k`` most active non-zero concepts of each image, as ``(name, activation)`` pairs."""
    values = np.asarray(concepts)
    result = []
    for row in values:
        order = np.argsort(-row, kind="stable")[:k]
        result.append([(names[i], float(row[i])) for i in order if row[i] != 0])
    return result


# --------------------------------------------------------------------------------------------------
# The layer


@keras.saving.register_keras_serializable(package="igr_tf")
class ConceptBottleneck(keras.layers.Layer):
    """Embedding ``[B, D]`` → activations of ``C`` named concepts (see the module docstring).

    Args:
      concept_names: the C concept names (their order is the activations' order).
      mode: one of :data:`MODES`: "l1", "contrastive", "gumbel" or "igr".
      temperature: τ > 0 of the slot modes' relaxation (ignored by "l1"/"contrastive").
      num_slots: S ≥ 1 slots of the slot modes: at most S concepts active per image.
      hard: straight-through in training (slot modes): exactly one-hot forward, relaxed gradient.
        ``hard=False`` trains on the relaxed ψ (activations in [0, 1], not exactly sparse).
      inference: "mode" (each slot's noise-free argmax) or "sample" (one exact one-hot draw).
      presence: slot modes' concept-presence probabilities: "pairwise" (closed form) or "exact"
        (see the module docstring; slow for "igr").
      seed: seed of the layer's sampling stream.

    Call: ``layer(embedding, training=None, seed=None)`` returns a dict of ``[B, C]`` tensors:
    "concepts" (the activations), "log_presence" and "log_absence" (log P(concept present) and
    its complement, for concept supervision).
    ``seed`` (a stateless seed, shape [2] ints) replaces the layer's own stream for that call.
    """

    def __init__(
        self,
        concept_names: Sequence[str],
        mode: str = "gumbel",
        temperature: float = DEFAULT_TEMPERATURE,
        num_slots: int = 4,
        *,
        hard: bool = True,
        inference: str = "mode",
        presence: str = "pairwise",
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.concept_names = tuple(str(n) for n in concept_names)
        if not self.concept_names or len(set(self.concept_names)) != len(self.concept_names):
            raise ValueError(f"`concept_names` must be non-empty and unique; got {concept_names}.")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}.")
        if inference not in INFERENCE:
            raise ValueError(f"`inference` must be one of {INFERENCE}; got {inference!r}.")
        if presence not in PRESENCE:
            raise ValueError(f"`presence` must be one of {PRESENCE}; got {presence!r}.")
        self.mode = mode
        self.temperature = positive_float(temperature, "temperature")
        self.num_slots = check_positive_int(num_slots, "num_slots")
        self.hard = bool(hard)
        self.inference = inference
        self.presence = presence
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def num_concepts(self) -> int:
        return len(self.concept_names)

    @property
    def sparse(self) -> bool:
        """True for the slot modes, whose activations have at most ``num_slots`` non-zeros."""
        return self.mode in _RELAXATION

    @property
    def _params_per_slot(self) -> int:
        # "igr": C locations and C raw scales (K - 1 = C); "gumbel": C logits (the null's is 0).
        return 2 * self.num_concepts if self.mode == "igr" else self.num_concepts

    @property
    def _num_outputs(self) -> int:
        return self.num_slots * self._params_per_slot if self.sparse else self.num_concepts

    def build(self, input_shape) -> None:
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                f"ConceptBottleneck needs a known embedding size (last axis); got {input_shape}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, self._num_outputs), initializer=self._kernel_init
        )
        self.bias = self.add_weight(
            name="bias", shape=(self._num_outputs,), initializer=self._bias_init
        )

    def _scale_columns(self, shape, dtype) -> np.ndarray:
        """Mask of the outputs that are IGR raw scales (the second half of each slot's)."""
        per_slot = np.arange(shape[-1]) % self._params_per_slot
        is_scale = (per_slot >= self.num_concepts) if self.mode == "igr" else per_slot < 0
        return np.broadcast_to(is_scale, shape)

    def _kernel_init(self, shape, dtype=None):
        # IGR scales start input-independent (the kernel's scale columns are 0), so that a
        # large embedding does not start with huge or vanishing noise.
        kernel = keras.initializers.GlorotUniform()(shape, dtype)
        return tf.where(self._scale_columns(shape, dtype), tf.zeros_like(kernel), kernel)

    def _bias_init(self, shape, dtype=None):
        # IGR raw scales start at softplus⁻¹(1): every σ starts at 1 (+1e-4).
        start = np.where(self._scale_columns(shape, dtype), _SOFTPLUS_INV_ONE, 0.0)
        return tf.constant(start, dtype=dtype)

    def _seed(self, seed) -> tf.Tensor:
        if seed is not None:
            return tf.cast(seed, tf.int32)
        return tf.cast(self.seed_generator.next(), tf.int32)

    def slot_params(self, embedding) -> tf.Tensor:
        """Each slot's relaxation parameters ``[B, S, P]`` (GS logits include the null's 0)."""
        out = tf.matmul(embedding, self.kernel) + self.bias
        params = tf.reshape(out, [-1, self.num_slots, self._params_per_slot])
        if self.mode == "gumbel":
            params = tf.concat([params, tf.zeros_like(params[..., :1])], axis=-1)
        return params

    def call(self, inputs, training=None, seed=None) -> dict[str, tf.Tensor]:
        embedding = tf.cast(inputs, self.compute_dtype)
        if not self.sparse:
            logits = tf.matmul(embedding, self.kernel) + self.bias
            return {
                "concepts": tf.nn.relu(logits),
                "log_presence": tf.math.log_sigmoid(logits),
                "log_absence": tf.math.log_sigmoid(-logits),
            }
        relaxation = _RELAXATION[self.mode]
        params = self.slot_params(embedding)
        if training:
            slots = relaxed_one_hot(
                params, self.temperature, relaxation, hard=self.hard, seed=self._seed(seed)
            )
        elif self.inference == "sample":
            slots = tf.stop_gradient(
                relaxed_one_hot(params, self.temperature, relaxation, True, self._seed(seed))
            )
        else:
            slots = noise_free_one_hot(params, relaxation)
        chosen = slots[..., :-1]  # [B, S, C]: the null category dropped
        concepts = 1.0 - tf.reduce_prod(1.0 - chosen, axis=-2)
        log_presence, log_absence = union_log_probs(
            *slot_presence_log_probs(params, relaxation, self.presence)
        )
        return {"concepts": concepts, "log_presence": log_presence, "log_absence": log_absence}

    def compute_output_spec(self, inputs, training=None, seed=None):
        shape = (inputs.shape[0], self.num_concepts)
        return {
            k: keras.KerasTensor(shape, dtype=self.compute_dtype)
            for k in ("concepts", "log_presence", "log_absence")
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            concept_names=list(self.concept_names),
            mode=self.mode,
            temperature=self.temperature,
            num_slots=self.num_slots,
            hard=self.hard,
            inference=self.inference,
            presence=self.presence,
            seed=self.seed,
        )
        return config
