"""Whole networks with every pooling layer swapped for numba_pool.torch modules, against the originals (CPU).

    python -m bench.models                                   # ResNet-18 and VGG-11, batch 8, 224x224, both formats
    python -m bench.models --model resnet18 --memory-format channels_last --repeats 5 --json out.json
    python -m bench.models --model tiny --batch 2 --size 32  # a small stand-in, seconds

For each model and memory format: a copy of the model (same random weights) gets
every ``torch.nn.MaxPool2d`` / ``AvgPool2d`` / ``AdaptiveAvgPool2d`` replaced by
the numba_pool.torch module with the same parameters (``AdaptiveAvgPool2d(1)`` by
``GlobalAvgPool2d``, its dedicated kernel). Then:

1. outputs, input gradient and parameter gradients of both models are compared
   (largest absolute difference, and that difference relative to the tensor's
   largest magnitude: "equal to rounding" means at most ``TOLERANCE``);
2. one forward + backward step of each model is timed, interleaved (ours, torch,
   ours, ...) after a warm-up, and min / median / max are reported;
3. each pooling layer alone is timed the same way on the input shape it gets
   inside the model (recorded by a forward hook), forward + backward.

Models run in ``eval()`` mode so that dropout does not make the two runs differ;
gradients flow as in training. ResNet-18 and VGG-11 come from torchvision when it
imports, else from the built-in definitions below (same layers; ``--source``
chooses). Read the ratios: absolute times on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numba
import torch
from torch import nn

import numba_pool
import numba_pool.torch as nt

MODELS = ("resnet18", "vgg11", "tiny")
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
TOLERANCE = 1e-4  # largest difference / largest magnitude, per tensor: float32 rounding through a deep network


# --------------------------------------------------------------------------- models


class _BasicBlock(nn.Module):
    """ResNet's two-convolution residual block."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inputs != outputs:
            self.downsample = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + shortcut)


def builtin_resnet18(classes: int = 1000) -> nn.Module:
    """ResNet-18 (He et al. 2015): the layers torchvision's resnet18() has, pooling included."""
    stages, inputs = [], 64
    for outputs, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        stages.append(nn.Sequential(_BasicBlock(inputs, outputs, stride), _BasicBlock(outputs, outputs, 1)))
        inputs = outputs
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
        *stages,
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, classes),
    )


def builtin_vgg11(classes: int = 1000) -> nn.Module:
    """VGG-11 (configuration A of Simonyan and Zisserman 2014, no batch norm), as torchvision's vgg11()."""
    layers, inputs = [], 3
    for width in (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool", 512, 512, "pool"):
        if width == "pool":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(inputs, width, 3, padding=1), nn.ReLU(inplace=True)]
            inputs = width
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(),
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, classes),
    )


def tiny_model() -> nn.Module:
    """A stand-in with one layer of each swapped kind: conv, max pool, conv, avg pool, global average."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def _torchvision_models():
    """torchvision.models, or None where torchvision is missing or does not import (a CUDA build next to a CPU torch)."""
    try:
        import torchvision.models
    except Exception:  # noqa: BLE001 - a broken install raises RuntimeError, not only ImportError
        return None
    return torchvision.models


def build_model(name: str, source: str) -> tuple[nn.Module, str]:
    """(the model with random weights, where its definition came from)."""
    if name == "tiny":
        return tiny_model(), "built-in"
    models = _torchvision_models() if source in ("auto", "torchvision") else None
    if models is not None:
        return getattr(models, name)(weights=None), f"torchvision {sys.modules['torchvision'].__version__}"
    if source == "torchvision":
        raise SystemExit(f"models: --source torchvision: torchvision does not import here; use --source builtin or auto")
    return {"resnet18": builtin_resnet18, "vgg11": builtin_vgg11}[name](), "built-in"


# --------------------------------------------------------------------------- swapping the pooling layers


def numba_pool_equivalent(module: nn.Module):
    """The numba_pool.torch module computing what ``module`` computes, or None for other modules."""
    if isinstance(module, nn.MaxPool2d):
        if module.return_indices:
            return None  # its (values, indices) output has no numba_pool module
        return nt.MaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode)
    if isinstance(module, nn.AvgPool2d):
        return nt.AvgPool2d(
            module.kernel_size, module.stride, module.padding, module.ceil_mode,
            module.count_include_pad, module.divisor_override,
        )
    if isinstance(module, nn.AdaptiveAvgPool2d):
        if module.output_size in (1, (1, 1)):
            return nt.GlobalAvgPool2d(keepdims=True)
        return nt.AdaptiveAvgPool2d(module.output_size)
    return None


def swap_pooling(model: nn.Module) -> list[str]:
    """Replace every swappable pooling layer of ``model`` in place; the names of the layers replaced."""
    swapped = []
    for name, module in list(model.named_modules())[1:]:  # the model itself is not a layer to replace
        replacement = numba_pool_equivalent(module)
        if replacement is not None:
            parent_name, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent_name), attribute, replacement)
            swapped.append(name)
    return swapped


# --------------------------------------------------------------------------- checking and timing


@dataclass
class Difference:
    tensor: str
    largest_absolute: float
    largest_relative: float  # the absolute difference over the reference's largest magnitude

    @property
    def equal_to_rounding(self) -> bool:
        return self.largest_relative <= TOLERANCE


def _difference(name: str, ours: torch.Tensor, reference: torch.Tensor) -> Difference:
    absolute = (ours.double() - reference.double()).abs().max().item() if ours.numel() else 0.0
    scale = reference.double().abs().max().item() if reference.numel() else 0.0
    return Difference(name, absolute, absolute / scale if scale else absolute)


def _forward_backward(model: nn.Module, x: torch.Tensor, grad_output: torch.Tensor):
    """(output, input gradient, parameter gradients by name) of one step from zeroed gradients."""
    x = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    model.zero_grad(set_to_none=True)
    output = model(x)
    output.backward(grad_output)
    return output.detach(), x.grad, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def compare_models(ours: nn.Module, reference: nn.Module, x: torch.Tensor, grad_output: torch.Tensor) -> list[Difference]:
    """Differences of the output, the input gradient and the worst parameter gradient."""
    our_output, our_input_grad, our_grads = _forward_backward(ours, x, grad_output)
    output, input_grad, grads = _forward_backward(reference, x, grad_output)
    if our_grads.keys() != grads.keys():
        raise RuntimeError(f"models: parameters with gradients differ: {sorted(our_grads.keys() ^ grads.keys())}")
    parameter_differences = [_difference(f"grad {name}", our_grads[name], grads[name]) for name in grads]
    worst = max(parameter_differences, key=lambda d: d.largest_relative, default=None)
    differences = [_difference("output", our_output, output), _difference("grad input", our_input_grad, input_grad)]
    return differences + ([worst] if worst else [])


def interleaved_seconds(functions: dict[str, Callable[[], object]], repeats: int, warmups: int = 1) -> dict:
    """{name: {min, median, max}} over ``repeats`` rounds that run every function once, in turn."""
    for _ in range(warmups):
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: dict(min=min(t), median=statistics.median(t), max=max(t)) for name, t in times.items()}


def training_step(model: nn.Module, x: torch.Tensor, grad_output: torch.Tensor) -> Callable[[], None]:
    def step():
        x.grad = None
        model.zero_grad(set_to_none=True)
        model(x).backward(grad_output)

    return step


def pooling_inputs(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, tuple[torch.Size, bool]]:
    """{layer name: (input shape, whether the input is channels-last)} seen in one forward pass."""
    seen, hooks = {}, []
    modules = dict(model.named_modules())
    for name in names:
        def record(module, inputs, name=name):
            seen[name] = (inputs[0].shape, inputs[0].is_contiguous(memory_format=torch.channels_last) and not inputs[0].is_contiguous())

        hooks.append(modules[name].register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def short_description(module: nn.Module) -> str:
    """E.g. ``MaxPool2d k3 s2 p1`` or ``AdaptiveAvgPool2d (7, 7)``: the settings that matter for speed."""
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return f"{type(module).__name__} {module.output_size}"
    return f"{type(module).__name__} k{module.kernel_size} s{module.stride} p{module.padding}"


def time_pooling_layers(ours: nn.Module, reference: nn.Module, names: list[str], x: torch.Tensor, repeats: int) -> list[dict]:
    """Each swapped layer alone, forward + backward, on the input it gets inside the model."""
    rows = []
    our_modules, reference_modules = dict(ours.named_modules()), dict(reference.named_modules())
    for name, (shape, channels_last) in pooling_inputs(reference, names, x).items():
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        layer_input = torch.randn(shape).contiguous(memory_format=memory_format).requires_grad_()
        grad_output = torch.randn_like(reference_modules[name](layer_input.detach()))
        steps = {
            "numba_pool": training_step(our_modules[name], layer_input, grad_output),
            "torch": training_step(reference_modules[name], layer_input, grad_output),
        }
        seconds = interleaved_seconds(steps, repeats)
        rows.append(dict(layer=name, module=short_description(reference_modules[name]), input_shape=list(shape),
                         channels_last=channels_last, seconds=seconds))
    return rows


def run_model(name: str, memory_format: str, batch: int, size: int, repeats: int, source: str) -> dict:
    torch.manual_seed(0)
    reference, origin = build_model(name, source)
    reference = reference.eval().to(memory_format=MEMORY_FORMATS[memory_format])
    ours = copy.deepcopy(reference)
    swapped = swap_pooling(ours)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=MEMORY_FORMATS[memory_format]).requires_grad_()
    with torch.no_grad():
        grad_output = torch.randn_like(reference(x))
    differences = compare_models(ours, reference, x, grad_output)
    steps = {"numba_pool": training_step(ours, x, grad_output), "torch": training_step(reference, x, grad_output)}
    return dict(
        model=name, source=origin, memory_format=memory_format, batch=batch, size=size, swapped=swapped,
        differences=[dict(asdict(d), equal_to_rounding=d.equal_to_rounding) for d in differences],
        seconds=interleaved_seconds(steps, repeats),
        layers=time_pooling_layers(ours, reference, swapped, x, repeats),
    )


# --------------------------------------------------------------------------- command line


def environment() -> dict:
    return dict(
        machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
        torch_threads=torch.get_num_threads(), numba_threads=numba.get_num_threads(),
        threading_layer=_threading_layer(),
        versions=dict(numba_pool=numba_pool.__version__, numba=numba.__version__, torch=torch.__version__,
                      python=platform.python_version()),
    )


def _threading_layer() -> str:
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return "not started"


def _ms(timing: dict) -> str:
    return "/".join(f"{timing[k] * 1e3:.2f}" for k in ("min", "median", "max"))


def format_result(result: dict) -> str:
    ours, theirs = result["seconds"]["numba_pool"], result["seconds"]["torch"]
    lines = [
        f"{result['model']} ({result['source']}), batch {result['batch']}, {result['size']}x{result['size']}, "
        f"{result['memory_format']}; swapped: {', '.join(result['swapped']) or 'nothing'}",
        f"  forward+backward ms min/median/max: numba_pool {_ms(ours)}  torch {_ms(theirs)}  "
        f"ratio of medians {ours['median'] / theirs['median']:.3f}",
    ]
    for d in result["differences"]:
        verdict = "equal to rounding" if d["equal_to_rounding"] else "DIFFERENT"
        lines.append(f"  {d['tensor']:<40} largest abs {d['largest_absolute']:.3g}  rel {d['largest_relative']:.3g}  {verdict}")
    for layer in result["layers"]:
        ours_layer, theirs_layer = layer["seconds"]["numba_pool"], layer["seconds"]["torch"]
        lines.append(
            f"  layer {layer['layer']:<10} {layer['module']:<28} {str(tuple(layer['input_shape'])):<20} "
            f"{'channels_last' if layer['channels_last'] else 'contiguous':<14}"
            f"ours {_ms(ours_layer)}  torch {_ms(theirs_layer)}  ratio {ours_layer['median'] / theirs_layer['median']:.3f}"
        )
    return "\n".join(lines)


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all", help="all: resnet18 and vgg11")
    parser.add_argument("--batch", type=_positive("--batch"), default=8)
    parser.add_argument("--size", type=_positive("--size"), default=224, help="input height and width")
    parser.add_argument("--memory-format", choices=[*MEMORY_FORMATS, "both"], default="both")
    parser.add_argument("--repeats", type=_positive("--repeats"), default=7, help="timed rounds after one warm-up")
    parser.add_argument("--source", choices=["auto", "torchvision", "builtin"], default="auto",
                        help="where ResNet-18 and VGG-11 come from (auto: torchvision if it imports)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return parser.parse_args(argv)


def _positive(option: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{option} must be an integer >= 1; got {text!r}")
        return value

    return parse


def main(argv=None) -> int:
    args = parse_arguments(argv)
    models = ["resnet18", "vgg11"] if args.model == "all" else [args.model]
    formats = list(MEMORY_FORMATS) if args.memory_format == "both" else [args.memory_format]
    results = []
    for name in models:
        for memory_format in formats:
            print(f"[{name} {memory_format}]", file=sys.stderr, flush=True)
            results.append(run_model(name, memory_format, args.batch, args.size, args.repeats, args.source))
            print(format_result(results[-1]), flush=True)
    report = dict(environment(), results=results)
    print(f"torch threads {report['torch_threads']}, numba threads {report['numba_threads']} ({report['threading_layer']})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    all_equal = all(d["equal_to_rounding"] for r in results for d in r["differences"])
    return 0 if all_equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
