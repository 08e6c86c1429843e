"""How the state models are written into checkpoints: the serializer every saver uses, and
the name of the one 'prepare' thread. Here, with the models, so the stores that save them
need nothing from the graphs."""

from __future__ import annotations

import zlib
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from codeclm.state.models import STATE_MODELS

PREPARE_THREAD = "prepare"
"""The thread of the 'prepare' graph (instruction threads are named by instruction id)."""


LEGACY_MODULE = "codeclm.state.models"
"""Where every state model lived until 0.1 split it up: checkpoints written then name each
class there, and that module still imports them all, so they read back as they were."""


COMPRESSED = "zlib+"
"""Prefix of the type of a value stored compressed (``CompactSerializer``)."""
COMPRESS_FROM = 256
"""Bytes from which a value is compressed: below, zlib's header costs what it saves."""


class CompactSerializer(JsonPlusSerializer):
    """LangGraph's serializer, its larger values zlib-compressed (level 1: the state's text
    and msgpack keys shrink two- to fourfold for about 10 µs a KB). Values stored plain
    by earlier versions read as they were."""

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        kind, data = super().dumps_typed(obj)
        if len(data) < COMPRESS_FROM:
            return kind, data
        return COMPRESSED + kind, zlib.compress(data, 1)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, payload = data
        if kind.startswith(COMPRESSED):
            return super().loads_typed((kind[len(COMPRESSED) :], zlib.decompress(payload)))
        return super().loads_typed(data)


def serializer() -> CompactSerializer:
    """Every state model registered, so none comes back from a checkpoint as a plain dict:
    under its module, and under the one it was written from before (``LEGACY_MODULE``)."""
    allowed = {(m.__module__, m.__name__) for m in STATE_MODELS}
    allowed |= {(LEGACY_MODULE, m.__name__) for m in STATE_MODELS}
    return CompactSerializer(allowed_msgpack_modules=sorted(allowed))
