"""Components that need no download: an offline CLIP tokenizer and tiny SD-1.5-layout models.

Used by the tests, the benchmarks' tiny mode and the toy-world model. The tokenizer is a real
``CLIPTokenizer`` (byte-level BPE), so everything downstream runs the same code as with
Stable Diffusion's own tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode table (256 entries)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def token_ids_config(tokenizer: CLIPTokenizer) -> dict[str, int]:
    """Text-config fields that must agree with ``tokenizer``: vocab size and special-token ids.

    Pass them into a ``CLIPTextConfig`` (or CLIPSeg's) so its embedding table and the EOS
    pooling position match the tokens it will be given.
    """
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def build_offline_clip_tokenizer(
    words: Iterable[str] = (), model_max_length: int = 77
) -> CLIPTokenizer:
    """A byte-level ``CLIPTokenizer`` built in memory, with merges for each of ``words``.

    Any text tokenizes (unknown words fall back to single bytes). Each listed word gets a chain
    of left-to-right merges; a word whose letters an earlier word's merges grab first (e.g.
    "desert" after "sea") comes out as a few pieces rather than one token. Either way the
    sequences stay short for tiny text encoders, and training and inference agree.
    Vocabulary order: 256 byte symbols, the same with ``</w>``, merged pieces, then BOS and EOS.
    """
    byte_symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for sym in byte_symbols + [s + "</w>" for s in byte_symbols]:
        vocab.setdefault(sym, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(w.lower() for w in words):
        if not word or not word.isascii() or " " in word:
            raise ValueError(f"tokenizer word must be one lowercase ASCII word, got {word!r}")
        # Merge left to right: "snow" -> ("s","n") -> ("sn","o") -> ("sno","w</w>").
        pieces = [*word[:-1], word[-1] + "</w>"]
        left = pieces[0]
        for right in pieces[1:]:
            merged = left + right
            if (left, right) not in merges:
                merges.append((left, right))
            vocab.setdefault(merged, len(vocab))
            left = merged
    vocab.setdefault(BOS_TOKEN, len(vocab))
    vocab.setdefault(EOS_TOKEN, len(vocab))
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=model_max_length,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
    )
