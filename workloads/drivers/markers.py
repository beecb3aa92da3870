"""Marker ids and the marker emitter shared by every guest driver (stdlib + torch only).

This file is copied into the disk image next to the drivers (``/opt/layerlab/drivers/``) and
imported there as a sibling module; layerlab itself is not installed in the guest.

Marker id scheme (one scheme, pure integer arithmetic, fits gem5's 32-bit exit code)::

    marker_id = step * 1_000_000 + (layer + 1) * 1_000 + module_code

* ``step``   0-based position of the forward pass in the driver's run order (warm-up passes
  first, then prefill, then the decode steps); at most 2146 so the id fits a signed int32,
  which is what gem5 passes back as the exit code of ``workbegin``/``workend``.
* ``layer``  0-based decoder layer, or -1 for work outside any layer (the whole step, the
  embedding, the final norm, the LM head): the middle field is then 0.
* ``module_code`` 0 for the whole step / whole layer, else the code of a module role in
  ``MODULE_CODES`` (the same role name for every model family, so `q_proj` means the same in
  Llama, OPT and the synthetic layer).

Why markers are synchronised: gem5 counts a kernel when its dispatch completes, while the host
runs ahead of the GPU. ``torch.cuda.synchronize()`` before each ``m5 workbegin/workend`` makes
the kernel counter that the gem5 loop records with the marker equal to the kernels launched
before it, so marker positions are exact kernel indices.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

STEP_FACTOR = 1_000_000
LAYER_FACTOR = 1_000
MAX_STEP = 2146  # 2146 * 1e6 + 999 * 1e3 + 999 < 2**31
MAX_LAYER = 998

#: Module roles and their codes (1..999). Layer-level roles first, then model-level roles.
MODULE_CODES: dict[str, int] = {
    "input_norm": 1,
    "attention": 2,
    "q_proj": 3,
    "k_proj": 4,
    "v_proj": 5,
    "qkv_proj": 6,
    "o_proj": 7,
    "post_attention_norm": 8,
    "mlp": 9,
    "gate_proj": 10,
    "up_proj": 11,
    "act_fn": 12,
    "down_proj": 13,
    "rotary_emb": 14,
    "embed": 20,
    "pos_embed": 21,
    "final_norm": 22,
    "lm_head": 23,
}
MODULE_NAMES: dict[int, str] = {code: name for name, code in MODULE_CODES.items()}
WHOLE = 0  # module code of a whole step or a whole layer

#: Prefix of profiler record_function names, ``layerlab:<id>:<label>``.
PROFILER_PREFIX = "layerlab:"
BACKENDS = ("gem5", "profiler", "none")
DEFAULT_M5 = "/sbin/m5"


def encode(step: int, layer: int = -1, module: str | int = WHOLE) -> int:
    """Marker id of (step, layer, module); layer -1 means outside any decoder layer."""
    code = module if isinstance(module, int) else MODULE_CODES[module]
    if not 0 <= step <= MAX_STEP:
        raise ValueError(f"marker step {step} outside 0..{MAX_STEP}")
    if not -1 <= layer <= MAX_LAYER:
        raise ValueError(f"marker layer {layer} outside -1..{MAX_LAYER}")
    if not 0 <= code <= 999:
        raise ValueError(f"module code {code} outside 0..999")
    return step * STEP_FACTOR + (layer + 1) * LAYER_FACTOR + code


def decode(marker_id: int) -> tuple[int, int, str | None]:
    """(step, layer, module role or None for a whole step/layer) of a marker id."""
    if marker_id < 0:
        raise ValueError(f"marker id {marker_id} is negative")
    step, rest = divmod(int(marker_id), STEP_FACTOR)
    layer_plus_one, code = divmod(rest, LAYER_FACTOR)
    if code != WHOLE and code not in MODULE_NAMES:
        raise ValueError(f"marker id {marker_id} has unknown module code {code}")
    return step, layer_plus_one - 1, MODULE_NAMES.get(code)


def profiler_name(marker_id: int, label: str) -> str:
    return f"{PROFILER_PREFIX}{marker_id}:{label}"


def parse_profiler_name(name: str) -> int | None:
    """Marker id from a record_function name written by this module, else None."""
    if not name.startswith(PROFILER_PREFIX):
        return None
    head = name[len(PROFILER_PREFIX) :].split(":", 1)[0]
    return int(head) if head.isdigit() else None


class Markers:
    """Emits begin/end markers through one back end and remembers the id table.

    ``gem5``: synchronise the GPU, then run ``/sbin/m5 workbegin|workend <id>`` (argv list, no
    shell). ``profiler``: open/close a ``torch.profiler.record_function`` named
    ``layerlab:<id>:<label>``. ``none``: only the id table is kept.
    """

    def __init__(self, backend: str = "none", m5: str = DEFAULT_M5, device: str = "cpu") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown marker back end {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.m5 = m5
        self.device = device
        self.table: dict[int, dict[str, Any]] = {}
        self.steps: list[dict[str, Any]] = []
        self._open: dict[int, Any] = {}

    # -- id table ---------------------------------------------------------------------
    def register(self, marker_id: int, label: str, **extra: Any) -> None:
        step, layer, module = decode(marker_id)
        entry = {"id": marker_id, "step": step, "layer": layer, "module": module, "label": label, **extra}
        self.table.setdefault(marker_id, entry)

    def add_step(self, step: int, phase: str, phase_index: int, tokens: int, context: int) -> None:
        self.steps.append(
            {"step": step, "phase": phase, "phase_index": phase_index, "tokens": tokens, "context": context}
        )

    def write_table(self, path: str, meta: dict[str, Any]) -> None:
        """Write the id table (JSON) via a temp file + rename; in gem5 export it with m5 writefile."""
        payload = {
            "schema": "layerlab-markers/1",
            "scheme": "step*1000000 + (layer+1)*1000 + module_code",
            "module_codes": MODULE_CODES,
            **meta,
            "steps": self.steps,
            "markers": [self.table[k] for k in sorted(self.table)],
        }
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1)
        os.replace(tmp, path)
        if self.backend == "gem5":
            subprocess.run([self.m5, "writefile", path, os.path.basename(path)], check=False)

    # -- emission ---------------------------------------------------------------------
    def _sync(self) -> None:
        if not self.device.startswith("cuda"):
            return
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def begin(self, marker_id: int, label: str) -> None:
        self.register(marker_id, label)
        if self.backend == "gem5":
            self._sync()
            subprocess.run([self.m5, "workbegin", str(marker_id)], check=True)
        elif self.backend == "profiler":
            import torch

            ctx = torch.profiler.record_function(profiler_name(marker_id, label))
            ctx.__enter__()
            self._open[marker_id] = ctx

    def end(self, marker_id: int, label: str) -> None:
        if self.backend == "gem5":
            self._sync()
            subprocess.run([self.m5, "workend", str(marker_id)], check=True)
        elif self.backend == "profiler":
            ctx = self._open.pop(marker_id, None)
            if ctx is not None:
                ctx.__exit__(None, None, None)

    @contextlib.contextmanager
    def region(self, marker_id: int, label: str) -> Iterator[None]:
        self.begin(marker_id, label)
        try:
            yield
        finally:
            self.end(marker_id, label)


class HookSet:
    """Forward hooks that bracket modules with markers; the current step is read at call time.

    ``targets`` is a list of (module, layer, role, qualified name). Hooks are the reason
    markers need no changes to model code: HF and the synthetic layer get the same markers.
    """

    def __init__(self, markers: Markers, targets: list[tuple[Any, int, str, str]]) -> None:
        self.markers = markers
        self.step = 0
        self.handles: list[Any] = []
        for module, layer, role, qualname in targets:
            self._attach(module, layer, role, qualname)

    def _attach(self, module: Any, layer: int, role: str, qualname: str) -> None:
        code = WHOLE if role == "layer" else MODULE_CODES[role]

        def pre_hook(_mod: Any, _args: Any) -> None:
            self.markers.begin(encode(self.step, layer, code), qualname)

        def post_hook(_mod: Any, _args: Any, _out: Any) -> None:
            self.markers.end(encode(self.step, layer, code), qualname)

        self.handles.append(module.register_forward_pre_hook(pre_hook))
        self.handles.append(module.register_forward_hook(post_hook))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def add_marker_arguments(parser: Any) -> None:
    """The marker flags every driver shares."""
    parser.add_argument("--markers", choices=BACKENDS, default="none", help="marker back end (default: none)")
    parser.add_argument("--marker-table", metavar="PATH", help="write the marker id table (JSON) here")
    parser.add_argument(
        "--m5", default=DEFAULT_M5, help=f"path of the m5 utility in the guest (default: {DEFAULT_M5})"
    )


#: Module names inside one Llama-style decoder layer → marker role (shared by ``hf`` and ``layer``).
LLAMA_LAYER_ROLES = {
    "input_layernorm": "input_norm",
    "self_attn": "attention",
    "self_attn.q_proj": "q_proj",
    "self_attn.k_proj": "k_proj",
    "self_attn.v_proj": "v_proj",
    "self_attn.o_proj": "o_proj",
    "post_attention_layernorm": "post_attention_norm",
    "mlp": "mlp",
    "mlp.gate_proj": "gate_proj",
    "mlp.up_proj": "up_proj",
    "mlp.act_fn": "act_fn",
    "mlp.down_proj": "down_proj",
}
