"""Event-shape rules shared by the bijectors that map R^{K-1} onto the K-simplex."""

from tensorflow_probability.python.internal import prefer_static as ps


class OntoSimplexShape:
    """Mixin: event shape `[..., K-1]` forward to `[..., K]` and back."""

    def _forward_event_shape(self, input_shape):
        if input_shape[-1] is None:
            return input_shape
        return input_shape[:-1].concatenate([input_shape[-1] + 1])

    def _forward_event_shape_tensor(self, input_shape):
        return ps.concat([input_shape[:-1], [input_shape[-1] + 1]], axis=0)

    def _inverse_event_shape(self, output_shape):
        if output_shape[-1] is None:
            return output_shape
        return output_shape[:-1].concatenate([output_shape[-1] - 1])

    def _inverse_event_shape_tensor(self, output_shape):
        return ps.concat([output_shape[:-1], [output_shape[-1] - 1]], axis=0)
