"""Named model shapes (``model=llama3_8b``): attention heads, key/value heads, head size and window of real models.

Each entry is taken from the model's published ``config.json`` (Hugging Face hub), fields
``num_attention_heads``, ``num_key_value_heads`` (Falcon: ``multi_query``), ``hidden_size / num_attention_heads``
(or ``head_dim``) and ``sliding_window``. A sweep with ``model=NAME`` sets ``heads``, ``kv_heads`` and ``head_dim``
from it (overriding those keys); a model with a sliding window sets ``window`` too, which a ``window`` pattern
uses (the other patterns ignore it). Every row records the model's name in the ``model`` column.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODELS", "ModelShape", "get_model"]


@dataclass(frozen=True)
class ModelShape:
    """The attention shape of one model.

    Args:
        name: the ``model=`` value.
        heads: query heads (``num_attention_heads``).
        kv_heads: key/value heads (``num_key_value_heads``; 1 for multi-query).
        head_dim: size of one head.
        window: sliding-window width (None: full causal attention).
        source: the published configuration the figures come from.
    """

    name: str
    heads: int
    kv_heads: int
    head_dim: int
    window: int | None = None
    source: str = ""

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads


#: The bundled shapes, by ``model=`` name.
MODELS: dict[str, ModelShape] = {m.name: m for m in (
    ModelShape("llama3_8b", 32, 8, 128, source="meta-llama/Llama-3.1-8B config.json: hidden_size 4096, "
               "num_attention_heads 32, num_key_value_heads 8"),
    ModelShape("llama3_70b", 64, 8, 128, source="meta-llama/Llama-3.1-70B config.json: hidden_size 8192, "
               "num_attention_heads 64, num_key_value_heads 8"),
    ModelShape("mistral_7b", 32, 8, 128, window=4096, source="mistralai/Mistral-7B-v0.1 config.json: hidden_size "
               "4096, num_attention_heads 32, num_key_value_heads 8, sliding_window 4096"),
    ModelShape("qwen2_5_7b", 28, 4, 128, source="Qwen/Qwen2.5-7B config.json: hidden_size 3584, "
               "num_attention_heads 28, num_key_value_heads 4 (use_sliding_window false)"),
    ModelShape("falcon_7b", 71, 1, 64, source="tiiuae/falcon-7b config.json: hidden_size 4544, n_head 71, "
               "multi_query true (one key/value head)"),
)}


def get_model(name: str) -> ModelShape:
    """The shape named ``name``.

    Raises:
        ValueError: no such model (the message lists the known ones).
    """
    if name not in MODELS:
        raise ValueError(f"model={name!r} is not a known model (allowed: {', '.join(MODELS)})")
    return MODELS[name]
