"""Run the CUDA tests on numba's CUDA simulator when this machine has no NVIDIA GPU.

Set before anything imports numba.cuda. On a machine with a GPU (or with
NUMBA_ENABLE_CUDASIM already set either way) nothing changes, so the same
tests run on the real device there.
"""

import glob
import os
import shutil

if "NUMBA_ENABLE_CUDASIM" not in os.environ:
    has_gpu = bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None
    if not has_gpu:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
