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
    5. Edge layers (``_edge_steps``): on real traces the first or last layer of a step often
       differs from the rest (llama.cpp's last layer gathers only the rows it outputs; HF's
       first layer can carry mask or rotary setup), so only ``N-1`` copies repeat exactly, or
       ``N-2`` when both edges differ. Where step 1 finds no stretch of ``N`` copies (the whole
       trace, or a gap between the steps it found: a prefill whose last layer differs before
       exact decode steps), stretches of ``N-1`` or ``N-2`` whole copies (at least 2) are
       extended to ``N`` layers. Every reading is tried: each phase of the exact copies the
       periodic stretch allows (a rotation of the block) and each of "first edge differs",
       "last edge differs" (``k = N-1`` exact copies), "both" (``k = N-2``). An edge layer is
       the span before the first exact copy (down to the previous step) or after the last one
       (up to the next step) that matches the block best: the most kernels in common less half
       the foreign ones (``3*LCS - len``, LCS of kernel names, bit-parallel), shortest on ties.
       It is accepted when its similarity ``LCS / max(len, P)`` is ``>= EDGE_SIMILARITY``
       (0.6) and its length within ``EDGE_LENGTH`` (50 % .. 150 %) of ``P``. The reading with
       the highest score ``2*k*P + sum(3*LCS - len)`` wins, then more exact copies, then a
       phase starting at a ``norm`` kernel, then the earliest phase. A "both" reading in a
       stretch that holds a whole period more than its ``k`` copies must have both edges reach
       past the stretch (else it splits an exact copy in two, and a garbage edge could pass).
       As in step 2, readings that are whole steps of shorter layers, or sub-structures (period
       below half the longest step's), are dropped; overlapping readings yield to the better
       one. Without any accepted reading the slicer refuses and names the copies it found and
       how well the edges matched. Identical steps are evaluated once (cache by content).

Confidence is 1.0 when every block boundary is forced by the data; it is at most 0.9 when the
norm rule placed a boundary, 0.8 when nested candidates had to be resolved, and 0.75 when only
the earliest-start rule placed it (the usual case for Llama: the final RMSNorm repeats the
layer's first ops). A step with an edge layer aligned by best match caps it at
``EDGE_CONFIDENCE`` (0.7) times the lowest edge similarity, times ``EDGE_TIE_FACTOR`` (0.9)
when another accepted reading with other boundaries scored as high (the tie-break rules chose:
e.g. a last layer missing its final kernels, which the step's tail could stand in for). The
notes say which boundaries were chosen by rule and among how many, and give each edge
layer with its similarity; ``to_json`` marks every layer ``exact`` or not and lists the edges.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from foundation.errors import InputError

#: The shortest plausible decoder layer, in kernels; shorter repeats (three projections in a
#: row, the two RoPE halves) are sub-structures, never layers.
MIN_BLOCK = 4
#: An edge layer aligned by best match must be at least this similar to the repeating block
#: (``LCS / max(len(edge), len(block))`` over kernel names: 1.0 is the block itself) ...
EDGE_SIMILARITY = 0.6
#: ... and hold between these fractions of the block's kernels.
EDGE_LENGTH = (0.5, 1.5)
#: Confidence cap of a step with edge layers aligned by best match, times their lowest similarity.
EDGE_CONFIDENCE = 0.7
#: Further factor when another accepted reading with other boundaries scored as high.
EDGE_TIE_FACTOR = 0.9


@dataclass(frozen=True)
class EdgeLayer:
    """A first or last layer of a step that differs from the block and was aligned by best match."""

    layer: int  # index of the layer in its step
    side: str  # "first" | "last"
    similarity: float  # LCS / max(len(edge), period)


@dataclass(frozen=True)
class StepSlice:
    first: int  # first kernel of the step (inclusive)
    last: int  # last kernel of the step (inclusive)
    layers: tuple[tuple[int, int], ...]  # (first, last) inclusive per layer
    period: int  # kernels per layer
    slack: int  # kernels of boundary ambiguity resolved by rule
    edges: tuple[EdgeLayer, ...] = ()  # layers aligned by best match (none: every layer exact)

    @property
    def exact(self) -> tuple[bool, ...]:
        """Per layer: True when it is an exact copy of the step's repeating block."""
        edge = {e.layer for e in self.edges}
        return tuple(i not in edge for i in range(len(self.layers)))


@dataclass
class SliceResult:
    steps: list[StepSlice]
    confidence: float
    num_kernels: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The stable JSON form: indices into the trace's launch order, inclusive ranges.

        Per step, ``exact`` says for each layer whether it is an exact copy of the block, and
        ``edges`` lists the edge layers aligned by best match (``layer`` index, ``edge``
        "first"/"last", ``similarity``); it is empty when every layer repeats exactly.
        """
        return {
            "steps": [
                {
                    "kernels": [s.first, s.last],
                    "layers": [list(r) for r in s.layers],
                    "exact": list(s.exact),
                    "edges": [
                        {"layer": e.layer, "edge": e.side, "similarity": round(e.similarity, 4)}
                        for e in s.edges
                    ],
                }
                for s in self.steps
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


@dataclass(frozen=True)
class _Placed:
    """One step's layers as found: exact copies, or exact copies plus edge layers."""

    start: int  # first kernel of the first layer
    stop: int  # one past the last kernel of the last layer
    period: int
    slack: int
    layers: tuple[tuple[int, int], ...]
    edges: tuple[EdgeLayer, ...] = ()


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
    notes: list[str] = []
    if not cands:
        placed, failure, edge_notes, edge_conf = _edge_steps(kernels, codes, layers, [(0, n)], [])
        if placed:
            notes += edge_notes
            return SliceResult(_steps(codes, placed), edge_conf, n, notes)
        best = (
            _best_repeat(codes) if not excess else max(excess.items(), key=lambda kv: (kv[1] * kv[0], kv[0]))
        )
        hint = (
            f"; a block of {best[0]} kernels repeats {best[1]} times (is the layer count {best[1]}?)"
            if best
            else ""
        )
        raise InputError(
            f"no block of >= {MIN_BLOCK} kernels repeats exactly {layers} times in a row{hint}{failure}"
        )
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
        period = cand.period
        ranges = tuple((start + j * period, start + (j + 1) * period - 1) for j in range(layers))
        placed.append(_Placed(start, start + period * layers, period, slack, ranges))
    for a, b in itertools.pairwise(placed):
        if b.start < a.stop:
            raise InputError(
                f"ambiguous structure: layer stretches starting at {a.start} and {b.start} overlap"
            )
    # Steps whose edge layers differ (a prefill's last layer, say) hold no N exact copies: look
    # for them in the gaps between the exact steps; a gap is usually a few head/tail kernels.
    gaps = list(zip([0] + [p.stop for p in placed], [p.start for p in placed] + [n], strict=True))
    extra, _, edge_notes, edge_conf = _edge_steps(kernels, codes, layers, gaps, [p.period for p in placed])
    if extra:
        placed = sorted(placed + extra, key=lambda p: p.start)
        notes += edge_notes
        confidence = min(confidence, edge_conf)
    return SliceResult(_steps(codes, placed), confidence, n, notes)


def _steps(codes: np.ndarray, placed: list[_Placed]) -> list[StepSlice]:
    n = len(codes)
    tail = codes[placed[-1].stop :]  # what follows the last step's layers: its suffix
    bounds: list[int] = [0]
    for a, b in itertools.pairwise(placed):
        gap = codes[a.stop : b.start]
        k = 0
        while k < len(gap) and k < len(tail) and gap[k] == tail[k]:
            k += 1
        bounds.append(a.stop + k)
    bounds.append(n)
    return [
        StepSlice(bounds[i], bounds[i + 1] - 1, p.layers, p.period, p.slack, p.edges)
        for i, p in enumerate(placed)
    ]


# --- edge layers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Near:
    period: int
    start: int  # first kernel of the periodic stretch
    stop: int  # one past its last kernel
    copies: int  # whole periods in the stretch (N-1 or N-2)
    lo: int  # the gap it was found in: edges stay inside
    hi: int


@dataclass(frozen=True)
class _Edge:
    side: str  # "first" | "last"
    first: int
    stop: int  # one past the last kernel (== first when no kernel was there)
    lcs: int
    similarity: float
    ok: bool


@dataclass(frozen=True)
class _Reading:
    """One way to read a near stretch as N layers: ``exact`` copies from ``phase`` plus edges."""

    near: _Near
    phase: int
    exact: int
    edges: tuple[_Edge, ...]
    norm_start: bool

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.edges)

    @property
    def score(self) -> int:
        """Kernels matched to the block less half the foreign ones, doubled: ``3*LCS - len`` per layer."""
        return self.exact * 2 * self.near.period + sum(3 * e.lcs - (e.stop - e.first) for e in self.edges)

    @property
    def key(self) -> tuple:
        return (self.score, self.exact, self.norm_start, -self.phase)

    @property
    def layout(self) -> tuple[tuple[int, int], ...]:
        period = self.near.period
        out = [(e.first, e.stop - 1) for e in self.edges if e.side == "first"]
        out += [(self.phase + j * period, self.phase + (j + 1) * period - 1) for j in range(self.exact)]
        out += [(e.first, e.stop - 1) for e in self.edges if e.side == "last"]
        return tuple(out)


def _lcs_prefixes(block: np.ndarray, seq: np.ndarray) -> list[int]:
    """``LCS(block, seq[:j])`` for j = 1..len(seq); bit-parallel (Hyyrö 2004), one big-int step per kernel."""
    masks: dict[int, int] = {}
    for i, c in enumerate(block.tolist()):
        masks[c] = masks.get(c, 0) | (1 << i)
    m = len(block)
    full = (1 << m) - 1
    v = full
    out = []
    for c in seq.tolist():
        u = v & masks.get(c, 0)
        v = ((v + u) | (v - u)) & full
        out.append(m - v.bit_count())
    return out


def _best_edge(codes: np.ndarray, block: np.ndarray, side: str, anchor: int, bound: int) -> _Edge:
    """The span next to ``anchor`` (after it for "last", before it for "first"), not past ``bound``,
    that matches ``block`` best: most kernels in common less half the foreign ones (``3*LCS - len``),
    the shortest on ties; its similarity is ``LCS / max(len, P)``."""
    period = len(block)
    lo_len = math.ceil(EDGE_LENGTH[0] * period)
    hi_len = math.floor(EDGE_LENGTH[1] * period)
    if side == "last":
        seq = codes[anchor : min(bound, anchor + hi_len)]
        lcs = _lcs_prefixes(block, seq)
    else:
        seq = codes[max(bound, anchor - hi_len) : anchor][::-1]
        lcs = _lcs_prefixes(block[::-1], seq)
    if not lcs:
        return _Edge(side, anchor, anchor, 0, 0.0, False)
    allowed = range(lo_len, len(lcs) + 1) if len(lcs) >= lo_len else [len(lcs)]  # too few: all, refused
    length = max(allowed, key=lambda j: (3 * lcs[j - 1] - j, -j))
    common = lcs[length - 1]
    similarity = common / max(length, period)
    ok = lo_len <= length <= hi_len and similarity >= EDGE_SIMILARITY
    first, stop = (anchor, anchor + length) if side == "last" else (anchor - length, anchor)
    return _Edge(side, first, stop, common, similarity, ok)


def _is_power(block: np.ndarray) -> bool:
    """The block is a shorter block repeated (its repeat is that block's, more times)."""
    period = len(block)
    return any(period % q == 0 and np.array_equal(block[q:], block[:-q]) for q in range(1, period // 2 + 1))


def _near_candidates(codes: np.ndarray, layers: int, lo: int, hi: int) -> list[_Near]:
    """Stretches in ``codes[lo:hi]`` holding N-1 or N-2 whole copies of a block (N-2 only if >= 2)."""
    fewest = max(2, layers - 2)
    most = layers - 1
    sub = codes[lo:hi]
    found: list[_Near] = []
    if most < 2:
        return found
    # N layers of which at most two are edges of at least half a block: (N-1)*P kernels at least.
    for period in range(MIN_BLOCK, len(sub) // most + 1):
        same = sub[:-period] == sub[period:]
        need = (fewest - 1) * period
        if np.count_nonzero(same) < need:
            continue
        for start, stop in _runs(same):
            if stop - start < need:
                continue
            copies = (stop - start + period) // period
            if copies > most:
                continue  # N copies or more: step 1's business
            block = sub[start : start + period]
            if len(np.unique(block)) < 2 or _is_power(block):
                continue
            found.append(_Near(period, lo + start, lo + stop + period, copies, lo, hi))
    return found


def _readings(kernels: Sequence[str], codes: np.ndarray, near: _Near, layers: int, lo: int, hi: int):
    """Every reading of ``near`` as N layers within ``[lo, hi)``."""
    period = near.period
    firsts: dict[int, _Edge] = {}
    for exact in (layers - 1, layers - 2):
        if exact < 2 or exact > near.copies:
            continue
        for phase in range(near.start, near.stop - exact * period + 1):
            block = codes[phase : phase + period]
            norm = "norm" in kernels[phase].lower()
            end = phase + exact * period
            if phase not in firsts:
                firsts[phase] = _best_edge(codes, block, "first", phase, lo)
            last = _best_edge(codes, block, "last", end, hi)
            if exact == layers - 1:
                yield _Reading(near, phase, exact, (firsts[phase],), norm)
                yield _Reading(near, phase, exact, (last,), norm)
            elif near.copies == exact or (firsts[phase].first < near.start and last.stop > near.stop):
                # With a whole period more in the stretch than exact copies, both edges must reach
                # past it: else they split one exact copy in two (and either could be garbage).
                yield _Reading(near, phase, exact, (firsts[phase], last), norm)


def _failure_key(reading: _Reading) -> tuple:
    """Which failed reading the error message describes: the widest stretch, the most exact copies,
    the closest edges."""
    edges = reading.edges
    return (
        reading.near.copies * reading.near.period,
        reading.exact,
        min(e.similarity for e in edges),
        sum(e.stop - e.first for e in edges),
        reading.key,
    )


def _evaluate(
    kernels: Sequence[str], codes: np.ndarray, near: _Near, layers: int, lo: int, hi: int
) -> tuple[_Reading | None, _Reading | None, int]:
    """(best accepted reading, best reading of all for the error message, accepted readings with
    other boundaries as good as the best)."""
    best: _Reading | None = None
    best_any: _Reading | None = None
    accepted: list[_Reading] = []
    for reading in _readings(kernels, codes, near, layers, lo, hi):
        if best_any is None or _failure_key(reading) > _failure_key(best_any):
            best_any = reading
        if reading.ok:
            accepted.append(reading)
            if best is None or reading.key > best.key:
                best = reading
    ties = 0
    if best is not None:
        layouts = {r.layout for r in accepted if r.score == best.score}
        ties = len(layouts) - 1
    return best, best_any, ties


class _Evaluator:
    """``_evaluate`` with a cache by content: identical steps (decode steps) are evaluated once.

    Edges reach at most ``EDGE_LENGTH[1] * P`` kernels past the stretch, so the readings of a
    stretch depend only on the kernels of that window (clipped to the gap) and move with it."""

    def __init__(self, kernels: Sequence[str], codes: np.ndarray, layers: int) -> None:
        self.kernels, self.codes, self.layers = kernels, codes, layers
        self.cache: dict[tuple, tuple[_Reading | None, _Reading | None, int]] = {}

    def __call__(self, near: _Near, lo: int, hi: int) -> tuple[_Reading | None, _Reading | None, int]:
        reach = math.floor(EDGE_LENGTH[1] * near.period)
        w0, w1 = max(lo, near.start - reach), min(hi, near.stop + reach)
        key = (self.codes[w0:w1].tobytes(), near.period, near.copies, near.start - w0, near.stop - w0)
        if key not in self.cache:
            self.cache[key] = (*_evaluate(self.kernels, self.codes, near, self.layers, w0, w1), w0)
        best, best_any, ties, at = self.cache[key]
        return _shifted(best, near, w0 - at), _shifted(best_any, near, w0 - at), ties


def _shifted(reading: _Reading | None, near: _Near, delta: int) -> _Reading | None:
    if reading is None or (delta == 0 and reading.near == near):
        return reading
    edges = tuple(
        _Edge(e.side, e.first + delta, e.stop + delta, e.lcs, e.similarity, e.ok) for e in reading.edges
    )
    return _Reading(near, reading.phase + delta, reading.exact, edges, reading.norm_start)


def _placed_of(reading: _Reading) -> _Placed:
    layout = reading.layout
    edges = tuple(
        EdgeLayer(0 if e.side == "first" else len(layout) - 1, e.side, e.similarity) for e in reading.edges
    )
    return _Placed(layout[0][0], layout[-1][1] + 1, reading.near.period, 0, layout, edges)


def _describe_failure(reading: _Reading, layers: int) -> str:
    near, period = reading.near, reading.near.period
    lo_len = math.ceil(EDGE_LENGTH[0] * period)
    hi_len = math.floor(EDGE_LENGTH[1] * period)
    parts = []
    for e in reading.edges:
        count = e.stop - e.first
        where = (
            f"kernels {e.first}..{e.stop - 1}, {count} kernel{'s' * (count != 1)}" if count else "no kernels"
        )
        parts.append(f"the {e.side} edge layer ({where}) matches it at similarity {e.similarity:.2f}")
    return (
        f"; nor do edge layers complete {layers}: kernels {near.start}..{near.stop - 1} hold {near.copies} "
        f"copies of a {period}-kernel block, and read as {reading.exact} exact layers from kernel "
        f"{reading.phase}, "
        + " and ".join(parts)
        + f" (need >= {EDGE_SIMILARITY} and {lo_len}..{hi_len} kernels)"
    )


def _edge_steps(
    kernels: Sequence[str],
    codes: np.ndarray,
    layers: int,
    gaps: list[tuple[int, int]],
    exact_periods: list[int],
) -> tuple[list[_Placed], str, list[str], float]:
    """Steps with N-1 (or N-2) exact copies plus edge layers in ``gaps``: (placed, why none, notes,
    confidence)."""
    nears = [c for lo, hi in gaps for c in _near_candidates(codes, layers, lo, hi)]
    if not nears:
        counts = " or ".join(str(c) for c in (layers - 1, layers - 2) if c >= 2)
        why = f"; no block repeats {counts} times either (for edge layers)" if counts else ""
        return [], why, [], 1.0
    evaluate = _Evaluator(kernels, codes, layers)
    results = []
    failure_best: _Reading | None = None
    for near in nears:
        best, best_any, ties = evaluate(near, near.lo, near.hi)
        if best is not None:
            results.append((best, ties))
        elif best_any is not None and (
            failure_best is None or _failure_key(best_any) > _failure_key(failure_best)
        ):
            failure_best = best_any
    failure = _describe_failure(failure_best, layers) if failure_best else ""
    if not results:
        return [], failure, [], 1.0
    # Whole steps of shorter layers: a reading whose layers hold another reading's N layers.
    spans = [(_placed_of(r), r, t) for r, t in results]
    keep = []
    for big, rb, tb in spans:
        inner = any(
            small.period < big.period
            and big.start <= small.start
            and small.stop <= big.stop
            and small.stop - small.start >= 0.5 * big.period
            for small, _, _ in spans
        )
        if not inner:
            keep.append((big, rb, tb))
    # Sub-structures of a layer: periods far below the steps' own.
    longest = max([p.period for p, _, _ in keep] + exact_periods)
    keep = [k for k in keep if k[0].period >= 0.5 * longest]
    keep.sort(key=lambda k: k[1].key, reverse=True)
    chosen: list[tuple[_Placed, _Reading, int]] = []
    for placed, reading, ties in keep:
        near = reading.near
        if any(near.start < c.stop and c.start < near.stop for c, _, _ in chosen):
            continue  # its exact copies lie inside a better step's layers
        if any(placed.start < c.stop and c.start < placed.stop for c, _, _ in chosen):
            lo = max([near.lo] + [c.stop for c, _, _ in chosen if c.stop <= near.start])
            hi = min([near.hi] + [c.start for c, _, _ in chosen if c.start >= near.stop])
            reading, _, ties = evaluate(near, lo, hi)
            if reading is None:
                continue
            placed = _placed_of(reading)
            if any(placed.start < c.stop and c.start < placed.stop for c, _, _ in chosen):
                continue
        chosen.append((placed, reading, ties))
    chosen.sort(key=lambda k: k[0].start)
    notes: list[str] = []
    confidence = 1.0
    for placed, reading, ties in chosen:
        lowest = min(e.similarity for e in placed.edges)
        cap = EDGE_CONFIDENCE * lowest
        for edge in placed.edges:
            first, last = placed.layers[edge.layer]
            notes.append(
                f"layers at {placed.start}: {edge.side} layer (kernels {first}..{last}, {last - first + 1} "
                f"kernels) aligned by best match to the {placed.period}-kernel block that repeats "
                f"{reading.exact} times: similarity {edge.similarity:.2f}"
            )
        if ties:
            cap *= EDGE_TIE_FACTOR
            notes.append(
                f"layers at {placed.start}: boundaries chosen by the tie-break rules among {ties + 1} "
                "equally good edge alignments"
            )
        confidence = min(confidence, cap)
    return [p for p, _, _ in chosen], failure, notes, confidence
