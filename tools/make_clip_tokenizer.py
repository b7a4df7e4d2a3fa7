"""Derive the CLIP BPE tokenizer files (vocab.json, merges.txt) from open_clip's vocabulary.

The vocabulary `bpe_simple_vocab_16e6.txt.gz` ships inside the `open_clip_torch` wheel (MIT).
Run once with the wheel present (``pip install --no-deps open_clip_torch`` or ``--wheel PATH``);
the result is committed under ``resources/clip_tokenizer`` so nothing needs open_clip at run time.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import zipfile
from pathlib import Path

VOCAB_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def read_gz(wheel: Path | None) -> bytes:
    if wheel is not None:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(VOCAB_MEMBER)
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise SystemExit("open_clip_torch is not installed: pip install --no-deps open_clip_torch")
    return (Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz").read_bytes()


def build(gz_bytes: bytes) -> tuple[dict[str, int], list[str]]:
    """Return (vocab, merges) exactly as OpenAI's SimpleTokenizer builds them."""
    lines = gzip.decompress(gz_bytes).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [t + "</w>" for t in tokens]
    tokens += ["".join(p) for p in pairs]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, [" ".join(p) for p in pairs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--wheel", type=Path, help="open_clip_torch wheel to read the vocabulary from")
    ap.add_argument("-o", "--out", type=Path, default=Path(__file__).parents[1] / "resources" / "clip_tokenizer")
    args = ap.parse_args()
    vocab, merges = build(read_gz(args.wheel))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (args.out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (args.out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(f"{len(vocab)} tokens, {len(merges)} merges -> {args.out}")


if __name__ == "__main__":
    main()
