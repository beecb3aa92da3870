"""The notebook's chunked-prefill approximation, kept so users can reproduce their old numbers.

The notebook did not model a chunk as "S prefill tokens over C past tokens plus d decode
tokens"; it split a chunk of ``chunk`` tokens of a workload with ``input_len`` prompt and
``output_len`` generated tokens per request into

* decode tokens: chunk · out / (in + out), at a context of in + out/2 (the mean decode context);
* prefill tokens p = chunk - decode tokens, at a context of in/√3 − p/2.

``notebook_chunk_shape`` turns that into the exact chunked-prefill shape layerlab models (one
GEMM over all tokens, attention per request), so both can be compared op by op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from foundation.errors import InputError


@dataclass(frozen=True)
class ChunkShape:
    seq: int  # prefill tokens in the chunk
    context: int  # their past tokens
    decode_tokens: int
    decode_context: int


def notebook_chunk_shape(chunk: int, input_len: int, output_len: int) -> ChunkShape:
    if chunk < 1 or input_len < 1 or output_len < 0:
        raise InputError(
            f"notebook chunk approximation needs chunk >= 1, input >= 1, output >= 0; "
            f"got {chunk}, {input_len}, {output_len}"
        )
    decode = round(chunk * output_len / (input_len + output_len))
    prefill = max(chunk - decode, 1)
    decode = chunk - prefill
    context = max(0, round(input_len / math.sqrt(3) - prefill / 2))
    return ChunkShape(prefill, context, decode, round(input_len + output_len / 2))
