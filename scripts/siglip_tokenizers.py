#!/usr/bin/env python3
"""Small real-format tokenizers for the SigLIP fixtures, and their conversion to `tokenizer.json`.

The real SigLIP tokenizers cannot be downloaded here, so the fixtures carry small ones built
the way the real ones are built:

* SigLIP (v1): a SentencePiece model (`spiece.model`) read by `transformers.SiglipTokenizer`
  (the slow, SentencePiece tokenizer: lowercase, ASCII punctuation removed, whitespace collapsed
  -- `canonicalize_text` -- then SentencePiece, then `</s>`).  `transformers` 5 ships no fast
  converter for it, so `convert_siglip` builds one with `transformers`' own
  `SpmConverter.build_tokenizer_from_spm_proto` (the SentencePiece model's normalizer, pieces
  and pre-tokenizer) and puts the canonicalisation in front of it, as the unmerged
  `SiglipConverter` of transformers PR #29969 and the published ONNX exports do.
* SigLIP 2: a Gemma tokenizer (byte-fallback BPE, `<pad>`=0 `<eos>`=1 `<bos>`=2 `<unk>`=3
  `<mask>`=4), trained with `tokenizers` and loaded by `transformers.GemmaTokenizer`.

`check_conversion` is the test of the conversion itself: slow and converted token ids must be
identical on many strings (accents, CJK, Arabic, emoji, punctuation, case, whitespace).
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

# Strings the conversion test and the fixtures' token references always include.
MULTILINGUAL = [
    "",
    " ",
    "   \t  \n ",
    "a",
    "A PHOTO OF A CAT",
    "A Photo Of A Cat On A MacBook",
    "HeLLo WoRLD",
    "Hello, world! How's it going?? (fine...) -- yes; no: maybe.",
    "!!!???...,,,;;;:::",
    "numbers 0 1 2 10 42 123 2024 3.14159 1,000,000 1e-5 #1 50%",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe se\u00f1or \u00e5ngstr\u00f6m",
    "Cafe\u0301 (combining accent) vs Caf\u00e9",
    "\u00c9T\u00c9 \u00c0 PARIS, \u00c7A VA ? \u00d1and\u00fa \u00d8RESUND",
    "\u732b\u304c\u5ea7\u3063\u3066\u3044\u308b \u4e00\u53ea\u732b\u5728\u8349\u5730\u4e0a \uace0\uc591\uc774\uac00 \uc788\ub2e4",
    "\u72d7\u3068\u732b\u3002\u3053\u3093\u306b\u3061\u306f\uff01\u5168\u89d2\uff21\uff22\uff23\uff11\uff12\uff13",
    "\u0642\u0637\u0629 \u062a\u062c\u0644\u0633 \u0639\u0644\u0649 \u0627\u0644\u0639\u0634\u0628\u060c \u0643\u0644\u0628 \u064a\u0631\u0643\u0636!",
    "\u05d7\u05ea\u05d5\u05dc \u05e2\u05dc \u05d4\u05d3\u05e9\u05d0 \u0915\u0941\u0924\u094d\u0924\u093e \u0926\u094c\u0921\u093c \u0930\u0939\u093e \u0939\u0948",
    "\u0420\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442 \u041a\u041e\u0428\u041a\u0410 \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u039f\u0394\u039f\u03a3 \u03b3\u03ac\u03c4\u03b1",
    "a dog \U0001F436 and a cat \U0001F431 \u2764\ufe0f \U0001F44D\U0001F3FD \U0001F1EB\U0001F1F7 \U0001F468\u200d\U0001F469\u200d\U0001F467",
    "line one\nline two\r\nline three\ttabbed",
    "repeated     spaces   between    words",
    "  leading and trailing spaces  ",
    "<b>bold</b> <img src=\"x.jpg\"/> &amp; &lt;tag&gt; <pad> <eos> <bos> <mask>",
    "don't it's we're I'm you'll they've she'd DON'T IT'S",
    "rock'n'roll o'clock 'quoted' \"double quoted\" \u2018curly\u2019 \u201ccurly\u201d \u00abguillemets\u00bb \u2014 dash",
    "e-mail user@example.com http://example.com/a?b=c#d",
    "snake_case camelCase kebab-case CONSTANT_CASE",
    "\u00a0non-breaking\u00a0space and zero\u200bwidth and\u3000ideographic space",
    "\u0130stanbul \u0131\u015f\u0131k DER FLU\u00df STRASSE \ufb01ne \u2160 \u2167 \u00bd \u2082",
    "T\u00fcrk\u00e7e \u00e7i\u00e7ek, Polski \u017c\u00f3\u0142w, \u010ce\u0161tina \u017elu\u0165ou\u010dk\u00fd k\u016f\u0148, Ti\u1ebfng Vi\u1ec7t con m\u00e8o",
    "\u0e41\u0e21\u0e27\u0e19\u0e31\u0e48\u0e07\u0e1a\u0e19\u0e40\u0e01\u0e49\u0e32\u0e2d\u0e35\u0e49 \u10d9\u10d0\u10e2\u10d0 \u0540\u0561\u0575\u0565\u0580\u0565\u0576",
]


# Special tokens written inside the text (see `convert_siglip`): not in the conversion test.
KNOWN_DIFFERENCES = ["a photo </s> of a cat <unk> here"]


def training_lines(captions_tsv: Path) -> list[str]:
    """Flickr8k captions plus multilingual sentences, so every script in the tests has pieces."""
    lines = []
    for row in captions_tsv.read_text(encoding="utf-8").splitlines():
        parts = row.split("\t", 1)
        if len(parts) == 2:
            lines.append(parts[1])
    extra = [
        "un chien court sur la plage au coucher du soleil",
        "eine Katze schl\u00e4ft auf dem Sofa neben dem Fenster",
        "un perro marr\u00f3n salta sobre la valla en el parque",
        "due bambini giocano a calcio nel cortile",
        "\u4e00\u53ea\u72d7\u5728\u6d77\u6ee9\u4e0a\u5954\u8dd1 \u4e24\u4e2a\u5b69\u5b50\u5728\u516c\u56ed\u91cc\u73a9",
        "\u72ac\u304c\u6d77\u8fba\u3092\u8d70\u3063\u3066\u3044\u308b \u732b\u304c\u5ea7\u3063\u3066\u3044\u308b",
        "\uac1c\uac00 \ud574\ubcc0\uc744 \ub2ec\ub9ac\uace0 \uc788\ub2e4 \uace0\uc591\uc774\uac00 \uc788\ub2e4",
        "\u0643\u0644\u0628 \u064a\u0631\u0643\u0636 \u0639\u0644\u0649 \u0627\u0644\u0634\u0627\u0637\u0626 \u0642\u0637\u0629 \u062a\u062c\u0644\u0633",
        "\u0441\u043e\u0431\u0430\u043a\u0430 \u0431\u0435\u0436\u0438\u0442 \u043f\u043e \u043f\u043b\u044f\u0436\u0443 \u043a\u043e\u0448\u043a\u0430",
        "\u03ad\u03bd\u03b1\u03c2 \u03c3\u03ba\u03cd\u03bb\u03bf\u03c2 \u03c4\u03c1\u03ad\u03c7\u03b5\u03b9 \u03c3\u03c4\u03b7\u03bd \u03c0\u03b1\u03c1\u03b1\u03bb\u03af\u03b1",
        "\u0915\u0941\u0924\u094d\u0924\u093e \u0938\u092e\u0941\u0926\u094d\u0930 \u0924\u091f \u092a\u0930 \u0926\u094c\u0921\u093c \u0930\u0939\u093e \u0939\u0948",
        "c\u00e1i m\u00e8o \u0111ang ng\u1ee7 tr\u00ean gh\u1ebf",
    ]
    return lines + extra * 3 + MULTILINGUAL


# ---------------------------------------------------------------------------
# SigLIP (v1): SentencePiece
# ---------------------------------------------------------------------------


def train_siglip_spm(lines: list[str], out_dir: Path, vocab_size: int = 1000) -> Path:
    """A unigram SentencePiece model with the SigLIP/T5 special ids (<pad>=0, </s>=1, <unk>=2)."""
    import io

    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        num_threads=1,
        seed_sentencepiece_size=100000,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path = out_dir / "spiece.model"
    path.write_bytes(model.getvalue())
    return path


def siglip_slow_tokenizer(spiece: Path, out_dir: Path):
    """`transformers.SiglipTokenizer` on the SentencePiece model, saved into out_dir."""
    from transformers import SiglipTokenizer

    tok = SiglipTokenizer(vocab_file=str(spiece), model_max_length=64)
    tok.save_pretrained(str(out_dir))
    return SiglipTokenizer.from_pretrained(str(out_dir))


def convert_siglip(slow) -> "tokenizers.Tokenizer":
    """The fast `tokenizers` equivalent of a `SiglipTokenizer` (see the module docs)."""
    from tokenizers import Regex, normalizers, processors
    from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf

    model_pb2 = import_protobuf()
    proto = model_pb2.ModelProto()
    proto.ParseFromString(Path(slow.vocab_file).read_bytes())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    tok = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=True)
    # canonicalize_text, before SentencePiece's own normalizer as in the slow tokenizer.
    # Python's `\s` and `str.strip()` use str.isspace, which also counts the ASCII separators
    # \x1c-\x1f; Rust's regex `\s` does not, so they are listed.
    space = r"[\s\x1c-\x1f]"
    canon = []
    if slow.do_lower_case:
        # `str.lower` lowercases a word-final capital sigma to final sigma; `Lowercase` maps
        # characters one by one, so that context rule goes first (a fixed-width look-behind:
        # the Rust regex engine of `tokenizers` allows no other).
        canon.append(normalizers.Replace(Regex(r"(?<=\p{L})\u03a3(?!\p{M}*\p{L})"), "\u03c2"))
        canon.append(normalizers.Lowercase())
    canon += [
        normalizers.Replace(Regex("[" + re.escape(string.punctuation) + "]"), ""),
        normalizers.Replace(Regex(space + "+"), " "),
        normalizers.Replace(Regex(r"\A | \z"), ""),
    ]
    tok.normalizer = normalizers.Sequence(canon + [tok.normalizer])
    eos = slow.eos_token
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, slow.convert_tokens_to_ids(eos))]
    )
    from tokenizers import AddedToken

    # The slow tokenizer splits its special tokens out of the raw text (pad is eos here),
    # stripping the spaces around them. Known difference, the one the conversion test leaves
    # out (KNOWN_DIFFERENCES): the slow tokenizer gives the chunk after a special token written
    # in the text no `▁` prefix; `Metaspace` prefixes every chunk ("always") or only a chunk at
    # offset 0 ("first"), which fails whenever canonicalisation removes a leading character.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=True, rstrip=True) for t in slow.all_special_tokens])
    return tok


# ---------------------------------------------------------------------------
# SigLIP 2: Gemma byte-fallback BPE
# ---------------------------------------------------------------------------

GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def train_gemma_bpe(lines: list[str], vocab_size: int = 1200):
    """A Gemma-shaped tokenizer (the structure `GemmaTokenizer` builds: `▁` for spaces, split on
    spaces merged with the previous piece, BPE with byte fallback) trained with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="\u2581", behavior="merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=GEMMA_SPECIALS + byte_tokens,
        initial_alphabet=[],
        show_progress=False,
        limit_alphabet=400,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    data = json.loads(tok.to_str())
    return data["model"]["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]


def gemma_tokenizer(vocab: dict, merges: list, out_dir: Path):
    """`transformers.GemmaTokenizer` (the class SigLIP 2 fixed-resolution checkpoints name) on
    the trained vocabulary, saved into out_dir and loaded back from it."""
    from transformers import GemmaTokenizer

    tok = GemmaTokenizer(vocab=vocab, merges=merges, model_max_length=64)
    tok.save_pretrained(str(out_dir))
    return GemmaTokenizer.from_pretrained(str(out_dir))


# ---------------------------------------------------------------------------
# The conversion test
# ---------------------------------------------------------------------------


def check_conversion(slow, fast, texts: list[str]) -> int:
    """Raises unless slow and fast give identical ids (with and without truncation to 64)."""
    from tokenizers import Tokenizer

    fast = Tokenizer.from_str(fast.to_str())
    fast.enable_truncation(max_length=64)  # keeps the special tokens the post-processor adds
    bad = []
    for t in texts:
        a = slow(t, truncation=True, max_length=64)["input_ids"]
        b = fast.encode(t).ids
        if a != b:
            bad.append((t, a, b))
    if bad:
        for t, a, b in bad[:10]:
            print(f"MISMATCH {t!r}\n  slow {a}\n  fast {b}")
        raise AssertionError(f"{len(bad)} of {len(texts)} strings tokenize differently after conversion")
    return len(texts)
