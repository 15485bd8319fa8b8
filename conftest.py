"""Test-session set-up shared by every test directory.

* Run the CUDA tests on numba's CUDA simulator when this machine has no NVIDIA
  GPU. Set before anything imports numba.cuda. On a machine with a GPU (or with
  NUMBA_ENABLE_CUDASIM already set either way) nothing changes, so the same
  tests run on the real device there. tests/conftest.py then runs the blocks
  of simulated launches faster (tests/simulator_blocks.py).
* The optional adapters' modules (and the CUDA backend) import their framework;
  without it installed, their doctests cannot be collected, so they are left
  out (their own tests skip with a reason).
"""

import glob
import importlib.util
import os
import shutil

if "NUMBA_ENABLE_CUDASIM" not in os.environ:
    has_gpu = bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None
    if not has_gpu:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

collect_ignore = [
    path
    for path, framework in [("numba_pool/torch.py", "torch"), ("numba_pool/dask.py", "dask"), ("numba_pool/backends/cuda", "numba_cuda")]
    if importlib.util.find_spec(framework) is None
]
