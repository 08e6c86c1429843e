"""How the state models are written into checkpoints: the serializer every saver uses, and
the name of the one 'prepare' thread. Here, with the models, so the stores that save them
need nothing from the graphs."""

from __future__ import annotations

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from codeclm.state.models import STATE_MODELS

PREPARE_THREAD = "prepare"
"""The thread of the 'prepare' graph (instruction threads are named by instruction id)."""


LEGACY_MODULE = "codeclm.state.models"
"""Where every state model lived until 0.1 split it up: checkpoints written then name each
class there, and that module still imports them all, so they read back as they were."""


def serializer() -> JsonPlusSerializer:
    """Every state model registered, so none comes back from a checkpoint as a plain dict:
    under its module, and under the one it was written from before (``LEGACY_MODULE``)."""
    allowed = {(m.__module__, m.__name__) for m in STATE_MODELS}
    allowed |= {(LEGACY_MODULE, m.__name__) for m in STATE_MODELS}
    return JsonPlusSerializer(allowed_msgpack_modules=sorted(allowed))
