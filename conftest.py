"""Test-session set-up shared by every test directory.

* Run the CUDA tests on numba's CUDA simulator when this machine has no NVIDIA
  GPU. Set before anything imports numba.cuda. On a machine with a GPU (or with
  NUMBA_ENABLE_CUDASIM already set either way) nothing changes, so the same
  tests run on the real device there. Under the simulator, Python switches
  threads more often (see below).
* The optional adapters' modules (and the CUDA backend) import their framework;
  without it installed, their doctests cannot be collected, so they are left
  out (their own tests skip with a reason).
"""

import glob
import importlib.util
import os
import shutil
import sys

if "NUMBA_ENABLE_CUDASIM" not in os.environ:
    has_gpu = bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None
    if not has_gpu:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

# The simulator runs each CUDA thread of a block as a Python thread and polls them from the launching
# thread, so each thread hand-off (at every syncthreads) waits for the interpreter's switch interval,
# 5 ms by default. At 0.1 ms the simulated kernels run several times faster (a global max of a
# (2, 3, 6, 6) array: 1.5 s -> 0.24 s).
SIMULATOR_SWITCH_INTERVAL = 1e-4
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.setswitchinterval(SIMULATOR_SWITCH_INTERVAL)

collect_ignore = [
    path
    for path, framework in [("numba_pool/torch.py", "torch"), ("numba_pool/dask.py", "dask"), ("numba_pool/backends/cuda", "numba_cuda")]
    if importlib.util.find_spec(framework) is None
]
