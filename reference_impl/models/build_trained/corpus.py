"""The corpus and tokenizer of the trained pair: CPython's reference docs and stdlib sources, byte-level BPE.

Every 20th document in sorted order is held out; ``token_stream`` encodes documents into one
stream, each preceded by EOS. The constants here (vocabulary, context length, EOS token) are
shared by training, evaluation and the README.
"""

from __future__ import annotations

import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

EOS_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 4096
HOLDOUT_EVERY = 20
SEQ_LEN = 512
# Stdlib folders left out of the corpus: tests, third-party packages, generated
# codec tables, the docs module itself (used as plain text instead), build files.
EXCLUDED_PARTS = {"test", "tests", "idle_test", "site-packages", "encodings", "pydoc_data", "__phello__", "__pycache__"}


@dataclass
class Corpus:
    """Training and held-out documents, each a list of (name, text)."""

    train: list[tuple[str, str]]
    heldout: list[tuple[str, str]]


def stdlib_sources() -> list[tuple[str, str]]:
    """Return (relative path, text) for the stdlib .py files, sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if EXCLUDED_PARTS.intersection(rel.parts) or rel.parts[0].startswith("config-"):
            continue
        try:
            files.append((rel.as_posix(), path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def pydoc_topics() -> list[tuple[str, str]]:
    """Return (topic name, text) for pydoc_data.topics, sorted by name."""
    from pydoc_data.topics import topics

    return [(f"pydoc:{name}", topics[name]) for name in sorted(topics)]


def split_holdout(docs: list[tuple[str, str]]) -> tuple[list, list]:
    """Hold out every HOLDOUT_EVERY-th document (index % 20 == 19)."""
    train = [d for i, d in enumerate(docs) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    held = [d for i, d in enumerate(docs) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    return train, held


def collect_corpus() -> Corpus:
    """Collect docs and sources; split each list deterministically."""
    doc_train, doc_held = split_holdout(pydoc_topics())
    src_train, src_held = split_holdout(stdlib_sources())
    return Corpus(train=doc_train + src_train, heldout=doc_held + src_held)


def train_tokenizer(texts: list[str]):
    """Train a byte-level BPE tokenizer and wrap it as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=SEQ_LEN,
    )


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Save the tokenizer and mark it as PreTrainedTokenizerFast."""
    tokenizer.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["clean_up_tokenization_spaces"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def token_stream(tokenizer, docs: list[tuple[str, str]]) -> torch.Tensor:
    """Encode documents into one stream, each document preceded by EOS."""
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    # The backend encodes whole documents without the model_max_length warning.
    encoded = tokenizer.backend_tokenizer.encode_batch([text for _, text in docs], add_special_tokens=False)
    ids: list[int] = []
    for doc in encoded:
        ids.append(eos)
        ids.extend(doc.ids)
    return torch.tensor(ids, dtype=torch.long)
