"""Draft vs no-draft on a serving engine, in the same run, and the engine's stored baseline.

``measure`` times the speculative server and its no-draft twin over the same prompts,
interleaved (draft, no-draft, draft, ...) so drift on a shared machine hits both alike, with the
client's view of each token (``Timer``: streamed tokens). It returns an ``EngineRow``: TTFT,
TPOT, tokens/s (medians), alpha and tau from the engine's counters, and the same-run ratios.

The baseline (``baselines/engines/llama-cpp.json``) stores, per engine build, pair and gamma, the
deterministic figures (greedy drafted / accepted / steps: a build that loses acceptance changes
them) and the same-run speedup with the machine it was measured on. ``gate`` compares a row
with its entry: acceptance within ``ALPHA_MARGIN`` on any machine, speedup at least
``SPEEDUP_FLOOR`` x the stored one only on the machine that stored it (a ratio, never an
absolute time). ``--specdec-save-baseline`` writes the entry.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reference_impl.stats import DecodeStats

from ..perf.baselines.store import BaselineError

ALPHA_MARGIN = 0.03  # greedy acceptance is deterministic in a build; this absorbs a near-tie flip between builds
SPEEDUP_FLOOR = 0.8  # same machine: speedup may not fall below 0.8 x the stored same-run speedup
# In a subfolder: the decoder baselines' store reads every *.json at the top of the folder as its own format.
BASELINE_FILE = Path("engines") / "llama-cpp.json"


@dataclass(frozen=True)
class EngineRow:
    gamma: int
    ttft_draft: float
    ttft_plain: float
    tpot_draft: float
    tpot_plain: float
    tps_draft: float
    tps_plain: float
    drafted: int
    accepted: int
    steps: int
    rejections: int
    tokens: int
    accepted_by_position: tuple[int, ...] = ()  # steps whose draft token at position i was accepted
    adapter: str = "native"  # the API the client used (plugin.ADAPTERS)

    @property
    def counts(self) -> DecodeStats:
        """The row's counts as a ``DecodeStats``, whose properties define every acceptance metric once."""
        return DecodeStats(new_tokens=self.tokens, steps=self.steps, drafted=self.drafted, accepted=self.accepted,
                           rejections=self.rejections)

    @property
    def alpha(self) -> float:
        return self.counts.alpha_estimate

    @property
    def acceptance_rate(self) -> float:
        return self.counts.acceptance_rate

    @property
    def tau(self) -> float:
        return self.counts.mean_accepted_length

    @property
    def rate_by_position(self) -> tuple[float, ...]:
        """Accepted at draft position i per step (llama.cpp's own per-position figure)."""
        return tuple(a / self.steps for a in self.accepted_by_position) if self.steps else ()

    @property
    def speedup(self) -> float:
        return self.tps_draft / self.tps_plain

    @property
    def ttft_ratio(self) -> float:
        return self.ttft_draft / self.ttft_plain

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate_by_position": list(self.rate_by_position), "alpha": self.alpha,
                "acceptance_rate": self.acceptance_rate, "tau": self.tau,
                "speedup": self.speedup, "ttft_ratio": self.ttft_ratio}

    def table_line(self) -> str:
        gamma = self.gamma if self.adapter == "native" else f"{self.gamma} ({self.adapter})"
        return (f"| {gamma} | {self.ttft_plain * 1e3:.2f} / {self.ttft_draft * 1e3:.2f} | "
                f"{self.tpot_plain * 1e3:.2f} / {self.tpot_draft * 1e3:.2f} | "
                f"{self.tps_plain:.0f} / {self.tps_draft:.0f} | {self.speedup:.2f} | "
                f"{self.alpha:.3f} | {self.tau:.2f} | {' '.join(f'{r:.2f}' for r in self.rate_by_position)} |")


TABLE_HEADER = ("| gamma | TTFT ms (no draft / draft) | TPOT ms (no draft / draft) | tok/s (no draft / draft) "
                "| speedup | alpha | tau | accepted per step at draft position 1..gamma |\n"
                "|---|---|---|---|---|---|---|---|")


def measure(draft_decoder: Any, plain_decoder: Any, counting_decoder: Any, prompts: list[Any], *, gamma: int,
            max_new_tokens: int, repeats: int, adapter: str = "native") -> EngineRow:
    """Timed interleaved runs (no counter reads inside the clock), then one counted greedy pass."""
    from reference_impl.sampling import SamplingConfig

    from ..perf.timing import Timer

    timer, greedy = Timer(), SamplingConfig()
    draft_runs, plain_runs = [], []
    for prompt in prompts:  # warm-up, untimed
        draft_decoder.generate(prompt, max_new_tokens=max_new_tokens, sampling=greedy)
        plain_decoder.generate(prompt, max_new_tokens=max_new_tokens, sampling=greedy)
    for _ in range(repeats):
        for prompt in prompts:
            draft_runs.append(timer.time(draft_decoder, prompt, max_new_tokens=max_new_tokens, sampling=greedy))
            plain_runs.append(timer.time(plain_decoder, prompt, max_new_tokens=max_new_tokens, sampling=greedy))
    counts = [counting_decoder.generate(p, max_new_tokens=max_new_tokens, sampling=greedy).stats for p in prompts]

    def median(runs: list[Any], what: str) -> float:
        return statistics.median(getattr(run, what) for run in runs)

    return EngineRow(
        gamma=gamma, ttft_draft=median(draft_runs, "ttft"), ttft_plain=median(plain_runs, "ttft"),
        tpot_draft=median(draft_runs, "tpot"), tpot_plain=median(plain_runs, "tpot"),
        tps_draft=median(draft_runs, "tokens_per_s"), tps_plain=median(plain_runs, "tokens_per_s"),
        drafted=sum(s.drafted for s in counts), accepted=sum(s.accepted for s in counts),
        steps=sum(s.steps for s in counts), rejections=sum(s.rejections for s in counts),
        tokens=sum(s.new_tokens for s in counts),
        accepted_by_position=tuple(int(sum(s.extra.get(f"accepted_at_{i}", 0) for s in counts)) for i in range(gamma)),
        adapter=adapter,
    )


def measure_gate_save(decoders: tuple[Any, Any, Any], prompts: list[Any], *, gamma: int, max_new_tokens: int,
                      repeats: int, adapter: str, directory: Path, key: str, machine: str,
                      save_baseline: bool) -> tuple[EngineRow, list[str]]:
    """``measure`` (draft, no-draft, counting decoders), store the row when asked, gate it on the stored entry.

    The row is stored only after every request of the run completed: a run an engine fault broke raises
    from ``measure`` (``http.EngineRequestError``) and leaves the stored baseline as it was.
    """
    row = measure(*decoders, prompts, gamma=gamma, max_new_tokens=max_new_tokens, repeats=repeats, adapter=adapter)
    if save_baseline:
        save(directory, key, row, machine)
    return row, gate(row, load(directory).get(key), machine)


def entry_key(build: str, pair: str, gamma: int) -> str:
    return f"{build} | {pair} | gamma={gamma}"


def load(directory: Path) -> dict[str, Any]:
    """The stored engine entries (none when the file does not exist); a damaged file is a clear error."""
    path = directory / BASELINE_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BaselineError(f"{path} is not a readable engine baseline ({exc}); restore it from version control "
                            "(git checkout -- PATH) or re-record it with --specdec-save-baseline") from exc
    if not isinstance(data, dict):
        raise BaselineError(f"{path} holds {type(data).__name__}, not the engine baseline's entries; restore it from "
                            "version control or re-record it with --specdec-save-baseline")
    return data


def save(directory: Path, key: str, row: EngineRow, machine: str) -> Path:
    path = directory / BASELINE_FILE
    data = load(directory)
    data[key] = {"machine": machine, **{k: v for k, v in row.as_dict().items()
                                        if not k.startswith(("ttft", "tpot")) and k != "adapter"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    partial.replace(path)
    return path


def gate(row: EngineRow, stored: dict[str, Any] | None, machine: str) -> list[str]:
    """Reasons the row fails its stored entry (empty: it passes, or there is no entry to compare)."""
    if not stored:
        return []
    problems = []
    if row.alpha < stored["alpha"] - ALPHA_MARGIN:
        problems.append(f"alpha {row.alpha:.3f} < stored {stored['alpha']:.3f} - {ALPHA_MARGIN}")
    if row.tau < stored["tau"] - ALPHA_MARGIN * row.gamma:
        problems.append(f"tau {row.tau:.2f} < stored {stored['tau']:.2f} - {ALPHA_MARGIN * row.gamma:.2f}")
    if stored.get("machine") == machine and row.speedup < SPEEDUP_FLOOR * stored["speedup"]:
        problems.append(f"speedup {row.speedup:.2f} < {SPEEDUP_FLOOR} x stored {stored['speedup']:.2f} (same machine)")
    return problems
