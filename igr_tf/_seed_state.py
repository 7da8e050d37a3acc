"""Saving a Keras seed generator's state with the weights of the layer or model that owns it."""

from __future__ import annotations

__all__ = ["SavesSeedState"]


class SavesSeedState:
    """Mixin for a Keras layer or model whose `self.seed_generator` (a `keras.random.SeedGenerator`)
    draws its noise.

    The generator's state is not a weight, so Keras would not save it: a reloaded model would
    restart its random stream from the initial seed while the saved one had moved on. Saving the
    state with the weights makes a reloaded model continue exactly where the saved one stood.
    Files written without it still load (the stream then restarts).
    """

    _SEED_STATE_KEY = "seed_generator_state"

    def save_own_variables(self, store) -> None:
        super().save_own_variables(store)
        store[self._SEED_STATE_KEY] = self.seed_generator.state.numpy()

    def load_own_variables(self, store) -> None:
        keys = list(store.keys())
        if self._SEED_STATE_KEY in keys:
            self.seed_generator.state.assign(store[self._SEED_STATE_KEY])
        super().load_own_variables({k: store[k] for k in keys if k != self._SEED_STATE_KEY})
