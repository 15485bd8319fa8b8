"""A small convolutional network in NumPy, trained on scikit-learn's digits with each pooling type.

    python examples/digits_cnn.py            # about a minute on 2 cores
    python examples/digits_cnn.py --epochs 1 --limit 128   # a quick smoke run

Network: conv 3x3 (16) -> ReLU -> pooling 2x2 -> conv 3x3 (32) -> ReLU -> head, where the
head is either a dense layer on the flattened maps or a 1x1 conv to 10 channels followed by
global average pooling (no dense layer). Pooling: max, average or stochastic (sampling while
training, the expected value at test time). Prints test accuracy and parameter count for each
combination, so the claims about pooling are measured here rather than asserted.

Needs scikit-learn for the data (``pip install "numba-pool[examples]"``); the data ships with it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import numba_pool as nb


class Conv2d:
    """3x3 (or 1x1) convolution with 'same' padding, by im2col and a matrix product."""

    def __init__(self, in_channels: int, out_channels: int, size: int, rng: np.random.Generator) -> None:
        scale = np.sqrt(2.0 / (in_channels * size * size))
        self.weight = rng.standard_normal((out_channels, in_channels, size, size)) * scale
        self.bias = np.zeros(out_channels)
        self.size = size

    def parameters(self) -> list[np.ndarray]:
        return [self.weight, self.bias]

    def forward(self, x: np.ndarray) -> np.ndarray:
        pad = self.size // 2
        padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        windows = sliding_window_view(padded, (self.size, self.size), axis=(2, 3))  # N, C, H, W, k, k
        n, c, h, w = x.shape
        self.columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, -1)
        self.input_shape = x.shape
        out = self.columns @ self.weight.reshape(len(self.weight), -1).T + self.bias
        return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2)

    def backward(self, grad: np.ndarray) -> list[np.ndarray]:
        """Returns [grad_input, grad_weight, grad_bias]."""
        n, c, h, w = self.input_shape
        flat = grad.transpose(0, 2, 3, 1).reshape(n * h * w, -1)
        grad_weight = (flat.T @ self.columns).reshape(self.weight.shape)
        grad_columns = (flat @ self.weight.reshape(len(self.weight), -1)).reshape(n, h, w, c, self.size, self.size)
        pad = self.size // 2
        grad_padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
        for i in range(self.size):
            for j in range(self.size):
                grad_padded[:, :, i : i + h, j : j + w] += grad_columns[..., i, j].transpose(0, 3, 1, 2)
        return [grad_padded[:, :, pad : pad + h, pad : pad + w], grad_weight, flat.sum(axis=0)]


class Dense:
    def __init__(self, inputs: int, outputs: int, rng: np.random.Generator) -> None:
        self.weight = rng.standard_normal((inputs, outputs)) * np.sqrt(2.0 / inputs)
        self.bias = np.zeros(outputs)

    def parameters(self) -> list[np.ndarray]:
        return [self.weight, self.bias]

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.input_shape = x.shape
        self.inputs = x.reshape(len(x), -1)
        return self.inputs @ self.weight + self.bias

    def backward(self, grad: np.ndarray) -> list[np.ndarray]:
        return [(grad @ self.weight.T).reshape(self.input_shape), self.inputs.T @ grad, grad.sum(axis=0)]


class Relu:
    def parameters(self) -> list[np.ndarray]:
        return []

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad: np.ndarray) -> list[np.ndarray]:
        return [grad * self.mask]


class Pool:
    """Adapts a numba_pool layer to this network's (forward, backward -> [grad]) protocol."""

    def __init__(self, layer) -> None:
        self.layer = layer

    def parameters(self) -> list[np.ndarray]:
        return []

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.layer.forward(x)

    def backward(self, grad: np.ndarray) -> list[np.ndarray]:
        return [self.layer.backward(grad)]

    def train(self, mode: bool) -> None:
        if hasattr(self.layer, "train"):
            self.layer.train(mode)


POOLINGS = {
    "max": lambda seed: nb.MaxPool2d(2),
    "average": lambda seed: nb.AvgPool2d(2),
    "stochastic": lambda seed: nb.StochasticPool2d(2, seed=seed),
}


def build_network(pooling: str, head: str, seed: int) -> list:
    rng = np.random.default_rng(seed)
    layers = [Conv2d(1, 16, 3, rng), Relu(), Pool(POOLINGS[pooling](seed)), Conv2d(16, 32, 3, rng), Relu()]
    if head == "dense":
        return layers + [Dense(32 * 4 * 4, 10, rng)]
    return layers + [Conv2d(32, 10, 1, rng), Pool(nb.GlobalAvgPool2d())]


def parameter_count(network: list) -> int:
    return sum(p.size for layer in network for p in layer.parameters())


def forward(network: list, x: np.ndarray) -> np.ndarray:
    for layer in network:
        x = layer.forward(x)
    return x


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    loss = -np.log(probabilities[np.arange(len(labels)), labels] + 1e-12).mean()
    probabilities[np.arange(len(labels)), labels] -= 1
    return loss, probabilities / len(labels)


class Adam:
    def __init__(self, parameters: list[np.ndarray], rate: float = 3e-3) -> None:
        self.parameters, self.rate, self.step = parameters, rate, 0
        self.first = [np.zeros_like(p) for p in parameters]
        self.second = [np.zeros_like(p) for p in parameters]

    def update(self, gradients: list[np.ndarray]) -> None:
        self.step += 1
        for p, g, m, v in zip(self.parameters, gradients, self.first, self.second):
            m[:] = 0.9 * m + 0.1 * g
            v[:] = 0.999 * v + 0.001 * g * g
            p -= self.rate * (m / (1 - 0.9**self.step)) / (np.sqrt(v / (1 - 0.999**self.step)) + 1e-8)


def train_step(network: list, optimizer: Adam, x: np.ndarray, labels: np.ndarray) -> float:
    loss, grad = softmax_cross_entropy(forward(network, x), labels)
    gradients = []
    for layer in reversed(network):
        grad, *parameter_grads = layer.backward(grad)
        gradients = parameter_grads + gradients
    optimizer.update(gradients)
    return loss


def set_training(network: list, mode: bool) -> None:
    for layer in network:
        if isinstance(layer, Pool):
            layer.train(mode)


def evaluate(network: list, x: np.ndarray, labels: np.ndarray) -> float:
    set_training(network, False)
    accuracy = float((forward(network, x).argmax(axis=1) == labels).mean())
    set_training(network, True)
    return accuracy


def load_data(limit: int | None, seed: int):
    from sklearn.datasets import load_digits  # the data ships inside scikit-learn: no download

    digits = load_digits()
    x = (digits.images / 16.0)[:, None]  # (N, 1, 8, 8)
    labels = digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    x, labels = x[order], labels[order]
    split = int(0.75 * len(x))
    train, test = (x[:split], labels[:split]), (x[split:], labels[split:])
    if limit:
        train, test = (train[0][:limit], train[1][:limit]), (test[0][:limit], test[1][:limit])
    return train, test


def run(pooling: str, head: str, epochs: int, batch: int, train, test, seed: int) -> dict:
    network = build_network(pooling, head, seed)
    optimizer = Adam([p for layer in network for p in layer.parameters()])
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(train[0]))
        for first in range(0, len(order), batch):
            chosen = order[first : first + batch]
            train_step(network, optimizer, train[0][chosen], train[1][chosen])
    return {
        "pooling": pooling,
        "head": head,
        "parameters": parameter_count(network),
        "train accuracy": evaluate(network, *train),
        "test accuracy": evaluate(network, *test),
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="passes over the training set (default 8)")
    parser.add_argument("--batch", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many train/test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pooling", nargs="+", choices=list(POOLINGS), default=list(POOLINGS))
    parser.add_argument("--head", nargs="+", choices=["dense", "global-avg"], default=["dense", "global-avg"])
    args = parser.parse_args(argv)

    train, test = load_data(args.limit, args.seed)
    print(f"digits: {len(train[0])} training and {len(test[0])} test images of 8x8, {args.epochs} epochs")
    print(f"{'pooling':<12}{'head':<12}{'parameters':>11}{'train acc':>11}{'test acc':>10}{'seconds':>9}")
    results = []
    for pooling in args.pooling:
        for head in args.head:
            result = run(pooling, head, args.epochs, args.batch, train, test, args.seed)
            results.append(result)
            print(
                f"{pooling:<12}{head:<12}{result['parameters']:>11}{result['train accuracy']:>11.3f}"
                f"{result['test accuracy']:>10.3f}{result['seconds']:>9.1f}",
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()
