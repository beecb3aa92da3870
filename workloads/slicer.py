"""Structural slicer: find forward steps and per-layer kernel blocks in a trace without markers.

Used where layer markers cannot exist: inside a vLLM step, rocprof or PyTorch-profiler traces
from real hardware, gem5 debug traces (kernel-object addresses). The one fact it relies on:
a decoder stack runs the *same* kernel sequence for every layer, so a forward pass contains a
stretch of exactly ``N`` back-to-back copies of one block (``N`` = the layer count).

Algorithm (``slice_kernels``)
    1. For every period ``P >= MIN_BLOCK`` find maximal stretches where ``k[i] == k[i+P]``;
       a stretch of length ``>= (N-1)*P`` holds ``floor(len/P)`` copies. Stretches with exactly
       ``N`` copies are candidates; more than ``N`` copies means this is not the layer block for
       ``N`` (often: the layer count is wrong, which the error says). A block made of a single
       kernel name (weight-upload copies, fills) is never a layer: a layer has at least a norm
       and a GEMM.
    2. Nesting: when a candidate lies inside another candidate of a longer period, either the
       small one is a sub-structure of a layer (RoPE halves, MoE experts: it covers < half of
       the long block) and is dropped, or the long one is a repetition of whole steps (decode
       steps when D == N: the small one covers most of the long block) and is dropped.
       Two candidates that overlap otherwise are equally good explanations: refused.
    3. Phase: a stretch may be longer than ``N*P`` (``slack``): the final norm after the last
       layer repeats the first op of a pre-norm layer, GPT-2/OPT's embedding ends with the same
       add as a layer. The block start is the first position in the slack whose kernel name
       contains ``norm`` (pre-norm layers start with their norm), else the earliest one (the
       final norm sits after the last layer). Each ambiguous kernel lowers the confidence.
    4. Steps: each candidate is one forward step. The gap between two steps is split where the
       kernels after the last step's layers (final norm, head, sampling) stop matching: that
       part ends the earlier step, the rest starts the next one.

Confidence is 1.0 when every block boundary is forced by the data; it is at most 0.9 when the
norm rule placed a boundary, 0.8 when nested candidates had to be resolved, and 0.75 when only
the earliest-start rule placed it (the usual case for Llama: the final RMSNorm repeats the
layer's first ops). The notes say which boundaries were chosen by rule and among how many.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from foundation.errors import InputError

#: The shortest plausible decoder layer, in kernels; shorter repeats (three projections in a
#: row, the two RoPE halves) are sub-structures, never layers.
MIN_BLOCK = 4


@dataclass(frozen=True)
class StepSlice:
    first: int  # first kernel of the step (inclusive)
    last: int  # last kernel of the step (inclusive)
    layers: tuple[tuple[int, int], ...]  # (first, last) inclusive per layer
    period: int  # kernels per layer
    slack: int  # kernels of boundary ambiguity resolved by rule


@dataclass
class SliceResult:
    steps: list[StepSlice]
    confidence: float
    num_kernels: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The stable JSON form: indices into the trace's launch order, inclusive ranges."""
        return {
            "steps": [
                {"kernels": [s.first, s.last], "layers": [list(r) for r in s.layers]} for s in self.steps
            ],
            "confidence": round(self.confidence, 4),
        }


@dataclass(frozen=True)
class _Candidate:
    period: int
    start: int  # first kernel of the repeating stretch
    stop: int  # one past its last kernel


def _codes(kernels: Sequence[str]) -> np.ndarray:
    table: dict[str, int] = {}
    return np.fromiter((table.setdefault(k, len(table)) for k in kernels), dtype=np.int32, count=len(kernels))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as (start, stop)."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def _candidates(codes: np.ndarray, layers: int) -> tuple[list[_Candidate], dict[int, int]]:
    n = len(codes)
    found: list[_Candidate] = []
    excess: dict[int, int] = {}  # period -> most copies seen when more than N
    for period in range(MIN_BLOCK, n // layers + 1):
        same = codes[:-period] == codes[period:]
        need = (layers - 1) * period
        if np.count_nonzero(same) < need:  # cheap test before looking for runs
            continue
        for start, stop in _runs(same):
            if stop - start < need:
                continue
            copies = (stop - start + period) // period
            if len(np.unique(codes[start : start + period])) < 2:
                continue  # one kernel repeated (a run of copies or fills) is never a layer
            if copies == layers:
                found.append(_Candidate(period, start, stop + period))
            elif copies > layers:
                excess[period] = max(excess.get(period, 0), copies)
    return found, excess


def _best_repeat(codes: np.ndarray) -> tuple[int, int] | None:
    """(period, copies) of the repeat covering the most kernels, for the error message."""
    best: tuple[int, int] | None = None
    for period in range(MIN_BLOCK, len(codes) // 2 + 1):
        same = codes[:-period] == codes[period:]
        if np.count_nonzero(same) < period:
            continue
        for start, stop in _runs(same):
            copies = (stop - start + period) // period
            distinct = len(np.unique(codes[start : start + period]))
            if copies >= 2 and distinct >= 2 and (best is None or copies * period > best[0] * best[1]):
                best = (period, copies)
    return best


def _resolve_nesting(cands: list[_Candidate], layers: int, notes: list[str]) -> tuple[list[_Candidate], bool]:
    drop: set[_Candidate] = set()
    nested = False
    for big in cands:
        inner = [c for c in cands if c.period < big.period and big.start <= c.start and c.stop <= big.stop]
        if not inner:
            continue
        nested = True
        covered = max(c.period * layers for c in inner) / big.period
        if covered >= 0.5:  # big repeats whole steps of small layers
            drop.add(big)
            notes.append(
                f"period {big.period} repeats whole steps; layers are its period-{inner[0].period} blocks"
            )
        else:  # small ones are pieces of a layer
            drop.update(inner)
    kept = [c for c in cands if c not in drop]
    kept.sort(key=lambda c: c.start)
    for a, b in itertools.pairwise(kept):
        if b.start < a.stop - (a.stop - a.start - a.period * layers) and a.period != b.period:
            raise InputError(
                f"ambiguous structure: kernels {b.start}..{a.stop - 1} repeat {layers} times with period "
                f"{a.period} and with period {b.period}; several equally good layer blocks"
            )
    return kept, nested


def _phase(kernels: Sequence[str], cand: _Candidate, layers: int) -> tuple[int, int, str]:
    slack = cand.stop - cand.start - cand.period * layers
    if slack == 0:
        return cand.start, 0, "exact"
    options = range(cand.start, cand.start + slack + 1)
    normed = [i for i in options if "norm" in kernels[i].lower()]
    if normed:
        return normed[0], slack, "norm"
    return cand.start, slack, "earliest"


def slice_kernels(kernels: Sequence[str], layers: int) -> SliceResult:
    """Find forward steps and per-layer blocks in a launch-ordered kernel sequence."""
    if layers < 1:
        raise InputError(f"--layers must be >= 1, got {layers}")
    if layers == 1:  # one layer has no copy to repeat against: any repeat found is whole steps
        raise InputError(
            "--layers 1: the slicer finds layers as N back-to-back copies of one block, and a 1-layer "
            "step has no second copy (what repeats is whole steps); use a run with layer markers "
            "(layerlab census / window) instead"
        )
    n = len(kernels)
    if n < MIN_BLOCK * max(layers, 2):
        raise InputError(
            f"trace has {n} kernels: too few for {layers} layers of at least {MIN_BLOCK} kernels each"
        )
    codes = _codes(kernels)
    cands, excess = _candidates(codes, layers)
    if not cands:
        best = (
            _best_repeat(codes) if not excess else max(excess.items(), key=lambda kv: (kv[1] * kv[0], kv[0]))
        )
        hint = (
            f"; a block of {best[0]} kernels repeats {best[1]} times (is the layer count {best[1]}?)"
            if best
            else ""
        )
        raise InputError(f"no block of >= {MIN_BLOCK} kernels repeats exactly {layers} times in a row{hint}")
    notes: list[str] = []
    cands, nested = _resolve_nesting(cands, layers, notes)
    confidence = 0.8 if nested else 1.0
    placed = []
    for cand in cands:
        start, slack, rule = _phase(kernels, cand, layers)
        if rule == "norm":
            confidence = min(confidence, 0.9)
        elif rule == "earliest":
            confidence = min(confidence, 0.75)
        if slack:
            notes.append(f"layers at {start}: boundary chosen by the {rule} rule among {slack + 1} positions")
        placed.append((start, start + cand.period * layers, cand.period, slack))
    for (a0, a1, _, _), (b0, _, _, _) in itertools.pairwise(placed):
        if b0 < a1:
            raise InputError(f"ambiguous structure: layer stretches starting at {a0} and {b0} overlap")
    return SliceResult(_steps(codes, placed), confidence, n, notes)


def _steps(codes: np.ndarray, placed: list[tuple[int, int, int, int]]) -> list[StepSlice]:
    n = len(codes)
    tail = codes[placed[-1][1] :]  # what follows the last step's layers: its suffix
    bounds: list[int] = [0]
    for (_, a1, _, _), (b0, _, _, _) in itertools.pairwise(placed):
        gap = codes[a1:b0]
        k = 0
        while k < len(gap) and k < len(tail) and gap[k] == tail[k]:
            k += 1
        bounds.append(a1 + k)
    bounds.append(n)
    steps = []
    for i, (s0, s1, period, slack) in enumerate(placed):
        ranges = tuple((s0 + j * period, s0 + (j + 1) * period - 1) for j in range((s1 - s0) // period))
        steps.append(StepSlice(bounds[i], bounds[i + 1] - 1, ranges, period, slack))
    return steps
