"""gem5 configs: render the GPU-FS run for one window on one as-simulated machine.

In: a ``Gem5GpuConfig`` (from ``analytical.hardware``), a gem5 version profile
(``profiles/*.yaml``: facts and option tables per release), a kernel window and the guest
workload command. Out: a run directory with a classic gem5 config script (and, for v24.1+, a
stdlib ViperBoard one) that runs layerlab's simulate loop, the guest run script,
``params.json`` and ``command.json`` (an argv list, never a shell string).

Public API::

    params = make_params(profile="v24.0", device="mi300x", kernel=..., disk=..., gem5_src=...,
                         guest_command=("python3", "/opt/layerlab/drivers/layer.py"),
                         skip_until=120, exit_after=131, per_kernel_dumps=True)
    rendered = render_run(params)          # files + command + content hash, nothing written
    rendered.write("runs/l3")              # atomic per file
    build_command(params).argv             # the gem5 argv (cwd = run directory)
    read_params("runs/l3").gpu             # later: the Gem5GpuConfig that was simulated

The simulate loop writes the events side-file whose schema lives in ``foundation.events``.
"""

from gem5_configs.command import Gem5Command, build_command
from gem5_configs.params import RenderParams, default_gpu_config, make_params
from gem5_configs.profiles import VersionProfile, all_profiles, get_profile
from gem5_configs.render import RenderedRun, read_params, render_run, render_to_dir

__all__ = [
    "Gem5Command",
    "RenderParams",
    "RenderedRun",
    "VersionProfile",
    "all_profiles",
    "build_command",
    "default_gpu_config",
    "get_profile",
    "make_params",
    "read_params",
    "render_run",
    "render_to_dir",
]
