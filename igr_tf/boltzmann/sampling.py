"""Block Gibbs sampling of a bipartite BM with stateless seeds.

Given one group the other is factorial: `p(z2 = 1 | z1) = σ(b + Wᵀz1)` and
`p(z1 = 1 | z2) = σ(a + W z2)`. One sweep draws `z2 | z1`, then `z1 | z2`; the chain on `z1`
leaves the marginal `p(z1)` invariant (and the pair `(z1, z2)` after the sweep is a draw of the
joint when `z1` was). A coupling scale `β` (AIS's intermediate distributions) multiplies `W`.
"""

from __future__ import annotations

import tensorflow as tf

from igr_tf._ops import RNG_ALGORITHM
from igr_tf.boltzmann.rbm import RBMParams, conditional_logits1, conditional_logits2

__all__ = ["bernoulli", "gibbs_chain", "gibbs_sweep", "initial_state"]


def _seed(seed) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(seed), tf.int32)


def bernoulli(logits: tf.Tensor, seed) -> tf.Tensor:
    """Binary draws `1[u < σ(logits)]`, u ~ U(0, 1), in the dtype of `logits` (stateless seed)."""
    u = tf.random.stateless_uniform(
        tf.shape(logits), _seed(seed), dtype=logits.dtype, alg=RNG_ALGORITHM
    )
    return tf.cast(u < tf.sigmoid(logits), logits.dtype)


def initial_state(num_chains: int, params: RBMParams, seed) -> tf.Tensor:
    """`z1` `[num_chains, n1]` drawn from the biases-only factorial model `Bernoulli(σ(a))`."""
    logits = tf.broadcast_to(params.bias1, tf.stack([num_chains, tf.shape(params.bias1)[0]]))
    return bernoulli(logits, seed)


def gibbs_sweep(z1: tf.Tensor, params: RBMParams, seed, beta=1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """One block Gibbs sweep: `z2 ~ p(z2 | z1)`, then `z1' ~ p(z1 | z2)`; returns `(z1', z2)`."""
    seed2, seed1 = tf.unstack(tf.random.experimental.stateless_split(_seed(seed), 2))
    z2 = bernoulli(conditional_logits2(z1, params, beta), seed2)
    return bernoulli(conditional_logits1(z2, params, beta), seed1), z2


def gibbs_chain(z1: tf.Tensor, params: RBMParams, num_steps, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """`num_steps ≥ 1` sweeps from `z1` (`[C, n1]`, C parallel chains); returns the last `(z1, z2)`.

    Step `t` uses the seed `fold_in(seed, t)`, so a chain is a deterministic function of its
    start and `seed`. Runs as one compiled `tf.while_loop`, called eagerly or traced.
    """
    if isinstance(num_steps, int) and num_steps < 1:
        raise ValueError(f"`num_steps` must be an integer >= 1; got {num_steps}.")
    z1 = tf.convert_to_tensor(z1, dtype=params.bias1.dtype)
    return _chain(z1, params, tf.convert_to_tensor(num_steps, tf.int32), _seed(seed))


# No autograph: the loop is an explicit tf.while_loop, and converting the code costs more
# than the rest of the trace.
@tf.function(reduce_retracing=True, autograph=False)
def _chain(z1, params, num_steps, seed):
    z2 = tf.zeros(tf.concat([tf.shape(z1)[:-1], tf.shape(params.bias2)], 0), z1.dtype)

    def body(t, z1, z2):
        step_seed = tf.random.experimental.stateless_fold_in(seed, t)
        z1, z2 = gibbs_sweep(z1, params, step_seed)
        return t + 1, z1, z2

    _, z1, z2 = tf.while_loop(lambda t, *_: t < num_steps, body, (tf.constant(0), z1, z2))
    return z1, z2
