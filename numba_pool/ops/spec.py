"""What the registry knows about an op: its public functions, its layer, how adapters run it.

An op module (``ops/max_pool.py`` and so on) writes its implementation
functions once, with their full signatures, and describes itself with one
:class:`OpSpec`. Everything public is generated from the specs listed in
:mod:`numba_pool.ops`: the functions of :mod:`numba_pool.functional` (names,
signatures, docstrings), the layer classes, the torch modules, the dask
adapter's choice of blocks, and the op lists of the self-check and the GPU
check. A new op that needs something none of the fields below says should get
a new field here, not a special case in a generated module.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Optional

DIMENSIONALITIES = (1, 2, 3)


@dataclass(frozen=True)
class Direction:
    """One public function per dimensionality: ``<op><dims>d<suffix>``, e.g. ``max_pool2d_backward``.

    ``implementation(dims, ...)`` takes the public parameters after ``dims``;
    its signature (without ``dims``) is the public signature.
    """

    suffix: str
    implementation: Callable
    doc: Callable[[int], str]

    def public_signature(self) -> inspect.Signature:
        signature = inspect.signature(self.implementation)
        return signature.replace(parameters=list(signature.parameters.values())[1:])


@dataclass(frozen=True)
class WindowBlocks:
    """How the dask adapter runs a sliding-window forward block by block (``dask="windows"``).

    prepare(options, plan, op) -> shared
        Once per call, after the arguments are checked: what every block shares (divisor scales,
        the call's one seed, flags). ``options`` holds the bound public arguments, ``plan`` is the
        whole input's window plan, ``op`` the public name (for error messages).
    block(region, window, shared) -> result
        One output block from the input ``region`` its windows read, on the CPU. ``window.plan``
        is the whole plan cut to the region; ``window.origin`` is the block's first output in
        canonical (N, C, D, H, W) coordinates, ``window.output_ranges`` its [first, stop) along
        the canonical D, H, W axes, ``window.whole_output_shape`` the whole canonical output
        shape. Indices in a (values, indices) result are flat in the region's planes; the adapter
        moves them to the whole planes.
    checking_options
        (name, value) pairs replaced in the zero-batch call that checks the arguments before
        ``prepare`` (stochastic pooling's seed: checking must not advance a caller's Generator).
    """

    prepare: Callable
    block: Callable
    checking_options: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class PlaneBlocks:
    """How the dask adapter runs a ``dask="planes"`` forward whose blocks must know which planes they hold.

    Without it, each block of whole (n, c) planes runs the public function as if it were the whole
    input; an op whose per-plane parameters come from the whole call (fractional pooling's samples
    and seed) says here how a block finds its own.

    checking_options(options) -> dict
        Replacements for the zero-batch call that checks the arguments first (arguments sized by
        the batch; a Generator that checking must not advance).
    prepare(options, op) -> shared
        Once per call, after that check: what every block shares. ``options`` holds the bound
        public arguments (``x`` the whole dask array, batched), ``op`` the public name.
    block(x, origin, shared) -> result
        The forward of one block ``x`` of whole planes (a batched NumPy array in the call's
        layout), whose first plane is (n, c) = ``origin`` in the whole input, on the CPU.
    """

    checking_options: Callable
    prepare: Callable
    block: Callable


@dataclass(frozen=True)
class SelfCheck:
    """One line of ``numba-pool check``: ``check(functions, rng, put, to_host)`` against the reference.

    ``functions`` is :mod:`numba_pool.functional` (checks call the public functions; an op module
    cannot import them), ``rng`` makes the random data, ``put`` moves a host array to the backend
    under test and ``to_host`` brings a result back. ``check`` raises
    :class:`numba_pool.ops._checks.Mismatch` naming what disagrees.
    """

    label: str
    check: Callable


@dataclass(frozen=True)
class CudaKernel:
    """A CUDA kernel for ``bench.cuda_compile_check``, which compiles it to PTX without a GPU.

    ``target(types)`` returns (kernel, argument types) from the numba types of one dtype
    (:class:`numba_pool.ops._checks.KernelTypes`): a per-element kernel's ``args`` tuple, or, with
    ``per_element=False``, a whole-block kernel's full signature. ``integers``: also compiled for an
    integer dtype; ``float64``: float64 arithmetic on purpose in its float32 form.
    """

    name: str
    target: Callable
    per_element: bool = True
    integers: bool = False
    float64: bool = False


@dataclass(frozen=True)
class OpSpec:
    """An op: its public functions, and what layers and adapters need to know to run it.

    name
        The public functions' stem: ``max_pool`` gives ``max_pool1d`` .. ``max_pool3d``.
    forward, backwards
        The forward function and the backward functions (suffix, implementation, doc).
    layer
        The layer and torch module stem (``MaxPool`` gives ``MaxPool2d``), or None for no layer.
    saves
        What the layer's forward keeps for its backward: ``"indices"`` (the backward routes each
        gradient to one saved position), ``"input_shape"`` (the backward is the adjoint of a linear
        map), ``"input_formula"`` (the backward reads x, and the call writes its gradient as differentiable
        pieces for double backward: :class:`numba_pool.ops._layer.InputCall`) or ``""`` (no backward).
    dask
        How the dask adapter splits the forward: ``"windows"`` (blocks follow the input's chunks,
        each reading the input region its windows cover) or ``"planes"`` (whole (n, c) planes).
        Backward passes always run on whole planes.
    windows
        For ``dask="windows"``: how one block runs (:class:`WindowBlocks`).
    planes
        For ``dask="planes"``, optionally: how one block finds its planes' share of the call
        (:class:`PlaneBlocks`).
    selfcheck
        ``numba-pool check``'s line for the op (:class:`SelfCheck`), or None for an op checked
        with a sibling on one line (global and adaptive max pooling, with their averages).
    device_checks
        ``bench.gpu_check``'s cases: ``device_checks(functions, channels_last)`` (with ``kernel,
        stride, padding`` after it for ``dask="windows"`` ops, checked for each window) returns
        ``{name: (function(x, gradient_like), "exact" or "close")}``; each function runs the op's
        public ``functions`` on ``x`` (host or device; the GPU check compares the two) and
        ``gradient_like(y)`` makes a gradient for ``y`` on its side.
    warm
        ``numba-pool warm``'s calls: ``warm(functions, dims, x, channels_last)`` runs the op's public
        ``functions`` forward and backward on a small ``x`` (of the dtype and layout being warmed) the
        ways a model calls them, so that every CPU kernel those calls need is compiled into the cache.
    cuda_kernels
        The op's CUDA kernels that ``bench.cuda_compile_check`` compiles to PTX (:class:`CudaKernel`).
    reference
        The pure-NumPy reference function in :mod:`numba_pool.reference`.
    kernels
        The op's entries of the backend contract, a ``typing.Protocol`` written in the op module
        (see :mod:`numba_pool.backends.contract`): every backend provides each entry, with these
        parameters, in the ``__all__`` of its kernel module.
    layer_class
        The layer without a dimensionality, written in the op module on a base of
        :mod:`numba_pool.ops._layer` (its ``saves`` as above): :mod:`numba_pool.layers` and
        :mod:`numba_pool.torch` make ``<layer>1d`` .. ``<layer>3d`` of it.
    channels_last_output
        The dimensionalities for which PyTorch's module returns channels-last memory for a
        channels-last (N, C, ...) input (for 1-D: channels innermost) (PyTorch 2.13, CPU); the
        torch module does the same.
    """

    name: str
    forward: Direction
    backwards: tuple[Direction, ...] = ()
    layer: Optional[str] = None
    saves: str = ""
    dask: str = "planes"
    windows: Optional[WindowBlocks] = None
    planes: Optional[PlaneBlocks] = None
    selfcheck: Optional[SelfCheck] = None
    device_checks: Optional[Callable[..., dict]] = None
    warm: Optional[Callable[..., None]] = None
    cuda_kernels: tuple[CudaKernel, ...] = ()
    reference: Optional[Callable] = None
    kernels: Optional[type] = None
    layer_class: Optional[type] = None
    channels_last_output: tuple[int, ...] = ()

    @property
    def directions(self) -> tuple[Direction, ...]:
        return (self.forward, *self.backwards)

    def public_name(self, dims: int, direction: Optional[Direction] = None) -> str:
        return f"{self.name}{dims}d{(direction or self.forward).suffix}"

    def public_names(self) -> list[str]:
        return [self.public_name(dims, d) for d in self.directions for dims in DIMENSIONALITIES]

    def layer_names(self) -> list[str]:
        return [] if self.layer is None else [f"{self.layer}{dims}d" for dims in DIMENSIONALITIES]
