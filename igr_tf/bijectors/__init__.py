"""TFP bijectors behind the IGR family.

- `SoftmaxPlusPlus(temperature, delta)`: R^{K-1} -> open K-simplex, softmax([x/τ, log δ]).
- `LogSoftmaxPlusPlus(temperature, delta)`: the same onto log ψ (finite where ψ underflows).
- `StickBreaking()`: (0,1)^{K-1} -> K-simplex, the stick-breaking construction.
- `LogitStickBreaking()`: R^{K-1} -> R^{K-1}, stick-breaking of sigmoid(z) in log-ratio space
  (volume preserving; what IGR-SB uses for stability).
- `Planar(w, u, b)`: invertible planar flow with a root-finding inverse.
"""

from igr_tf.bijectors.planar import Planar
from igr_tf.bijectors.softmax_plus_plus import LogSoftmaxPlusPlus, SoftmaxPlusPlus
from igr_tf.bijectors.stick_breaking import LogitStickBreaking, StickBreaking

__all__ = ["LogSoftmaxPlusPlus", "LogitStickBreaking", "Planar", "SoftmaxPlusPlus", "StickBreaking"]
