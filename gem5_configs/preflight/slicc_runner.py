"""Run gem5's SLICC on one protocol, in its own interpreter (started by ``build.run_slicc``).

Run as a script, not imported: it puts the tree's ``ext/ply`` and ``build_tools`` and a scratch
copy of ``src/mem/slicc`` on ``sys.path``, which must not leak into the caller. The argument is
one JSON object: ``tree``, ``slicc_parent`` (folder holding the ``slicc`` copy), ``protocol``,
``out_dir``.

The constructor's signature is the one thing that differs between the trees: v24.0 takes
``SLICC(protocol_file, base_dir, ...)``, v24.1+ ``SLICC(protocol_file, [shared includes],
base_dir, ...)`` (as ``src/mem/ruby/protocol/SConscript`` calls it). The choice is made from
the constructor's own parameters rather than the version string, so a develop tree works too.
"""

from __future__ import annotations

import inspect
import json
import os
import sys


def main() -> int:
    request = json.loads(sys.argv[1])
    tree = request["tree"]
    sys.path[0:0] = [
        request["slicc_parent"],
        os.path.join(tree, "ext", "ply"),
        os.path.join(tree, "build_tools"),
    ]
    from slicc.parser import SLICC  # type: ignore[import-not-found]

    base = os.path.join(tree, "src", "mem", "ruby", "protocol")
    protocol_file = os.path.join(base, f"{request['protocol']}.slicc")
    params = list(inspect.signature(SLICC.__init__).parameters)
    if "includes" in params:
        slicc = SLICC(protocol_file, [os.path.join(base, "RubySlicc_interfaces.slicc")], base, verbose=False)
    else:
        slicc = SLICC(protocol_file, base, verbose=False)
    slicc.process()
    slicc.writeCodeFiles(request["out_dir"], ["mem/ruby/slicc_interface/RubySlicc_includes.hh"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
