"""``python -m bench.dask_scaling``: how the dask adapter scales with the number of chunks, and its compute speed.

Two tables:

* graph building: seconds to build (not compute) the lazy result of each op for arrays of 256 to
  10,000 chunks: the sliding-window forwards on a grid of spatial chunks, and the whole-plane ops
  (global pooling, a max pooling backward pass) on a grid of batch x channel chunks.
* compute: a multiscale average pyramid of a (1, 3, 8192, 8192) float32 image on a
  ``distributed.LocalCluster`` (processes, 127.0.0.1 only), against the same levels computed by the
  single-process NumPy calls. The input is generated and persisted in the workers first, so neither side
  pays for making or shipping it; "persist" leaves the levels in the workers, "compute" gathers them
  into this process, as ``.compute()`` does.

Each figure is min / median / max over ``--repeat`` runs. Timings are only comparable within one run
on one otherwise idle machine. The "no-op tasks" row runs a graph of the pyramid's shape whose tasks
only take strided views: what the cluster's scheduling costs without any pooling.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _timed(thunk, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        thunk()
        times.append(time.perf_counter() - start)
    return times


def _spread(times: list[float]) -> str:
    return f"{min(times):8.3f} {statistics.median(times):8.3f} {max(times):8.3f}"


def _graph_cases(chunks: int):
    """(label, function building a lazy result) per op, on an array of about ``chunks`` chunks."""
    import dask.array as da

    import numba_pool as nb

    side = max(1, round(chunks**0.5))
    spatial = da.zeros((1, 1, 4 * side, 4 * side), chunks=(1, 1, 4, 4), dtype=np.float32)
    planes = da.zeros((side, side, 8, 8), chunks=(1, 1, 8, 8), dtype=np.float32)
    pooled, indices = nb.max_pool2d(planes, 2, return_indices=True)
    return spatial.npartitions, [
        ("max_pool2d k3 s2 p1, indices", lambda: nb.max_pool2d(spatial, 3, 2, 1, return_indices=True)),
        ("avg_pool2d k2", lambda: nb.avg_pool2d(spatial, 2)),
        ("stochastic_pool2d k3 s2", lambda: nb.stochastic_pool2d(spatial, 3, 2, seed=1)),
        ("global_avg_pool2d (N x C chunks)", lambda: nb.global_avg_pool2d(planes)),
        ("max_pool2d_backward (N x C chunks)", lambda: nb.max_pool2d_backward(pooled, indices, planes.shape)),
    ]


def graph_building(chunk_counts: list[int], repeat: int) -> None:
    import numba_pool as nb

    tiny = np.zeros((1, 1, 4, 4), np.float32)  # compile (or load) the kernels the argument checks run
    nb.max_pool2d_backward(*nb.max_pool2d(tiny, 2, return_indices=True), tiny.shape)
    nb.avg_pool2d(tiny, 2), nb.stochastic_pool2d(tiny, 2, seed=1), nb.global_avg_pool2d(tiny)
    print("graph building, seconds (min median max)")
    print(f"{'op':36} {'chunks':>7} {'min':>8} {'median':>8} {'max':>8} {'tasks':>7}")
    for count in chunk_counts:
        chunks, cases = _graph_cases(count)
        for label, build in cases:
            times = _timed(build, repeat)
            result = build()
            result = result[0] if isinstance(result, tuple) else result
            tasks = len(result.dask.layers[result.name])
            print(f"{label:36} {chunks:7d} {_spread(times)} {tasks:7d}")


def _cluster_times(client, run, repeat: int) -> list[float]:
    """Times of ``run()``, each once the cluster has dropped the results of the one before: the graph keys
    are deterministic, so a rerun would otherwise find some of its results still in the workers."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        results = run()
        times.append(time.perf_counter() - start)
        del results
        while client.run_on_scheduler(_holds_pooling_results):
            time.sleep(0.01)
    return times


def _holds_pooling_results(dask_scheduler=None) -> bool:
    return any("avg_pool" in str(key) or "getitem" in str(key) for key in dask_scheduler.tasks)


def _strided_levels(x, levels: int) -> list:
    """A graph of the pyramid's shape whose tasks do nothing (strided views): the scheduling floor."""
    result = [x]
    for _ in range(levels):
        result.append(result[-1][..., ::2, ::2])
    return result[1:]


def pyramid_compute(shape: tuple[int, ...], chunk: int, levels: int, workers: int, threads: int, numba_threads: int | None,
                    repeat: int) -> None:
    import dask.array as da
    import distributed

    import numba_pool as nb
    from numba_pool.dask import pyramid

    def numpy_levels(x):
        result = [x]
        for _ in range(levels):
            result.append(nb.avg_pool2d(result[-1], 2))
        return result[1:]

    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    numpy_levels(x[..., :64, :64])  # compile
    numpy_times = _timed(lambda: numpy_levels(x), repeat)
    expected = numpy_levels(x)
    del x
    chunks = (1, 1, chunk, chunk)
    environment = {} if numba_threads is None else {"NUMBA_NUM_THREADS": str(numba_threads)}
    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=threads, processes=True, host="127.0.0.1", dashboard_address=None,
        env=environment,
    ) as cluster, distributed.Client(cluster) as client:
        lazy_x = da.random.default_rng(0).random(shape, dtype=np.float32, chunks=chunks)
        lazy_x = client.persist(lazy_x)  # made in the workers: not counted below
        distributed.wait(lazy_x)
        client.compute(pyramid(lazy_x[..., :64, :64], 1)[1], sync=True)  # compile in every worker
        client.run(lambda: nb.avg_pool2d(np.zeros((1, 1, 4, 4), np.float32), 2))

        persist_times = _cluster_times(client, lambda: distributed.wait(client.persist(pyramid(lazy_x, levels)[1:])), repeat)
        floor_times = _cluster_times(client, lambda: distributed.wait(client.persist(_strided_levels(lazy_x, levels))), repeat)
        compute_times = _cluster_times(client, lambda: client.gather(client.compute(pyramid(lazy_x, levels)[1:])), repeat)
        got = client.compute(pyramid(lazy_x, levels)[-1], sync=True)
        # the workers' input differs from this process's (another generator); check the shape and run a
        # same-input check on a part of it instead
        assert got.shape == expected[-1].shape
        part = client.compute(lazy_x[..., :512, :512], sync=True)
        assert np.array_equal(client.compute(pyramid(da.from_array(part, chunks=(1, 1, 128, 128)), levels)[-1], sync=True),
                              numpy_levels(part)[-1])
        tasks = sum(len(level.dask.layers[level.name]) for level in pyramid(lazy_x, levels)[1:])
    median = statistics.median(numpy_times)
    print(f"\npyramid of {shape} float32, {levels} levels of avg_pool2d k2, chunks {chunks}, {tasks} pooling tasks, "
          f"LocalCluster of {workers} worker processes x {threads} threads, "
          f"Numba threads per worker: {numba_threads or 'all cores'}")
    print(f"{'':34} {'min':>8} {'median':>8} {'max':>8} {'/ NumPy':>8}")
    for label, times in [("NumPy, one process", numpy_times), ("dask, persist in workers", persist_times),
                         ("dask, same graph, no-op tasks", floor_times),
                         ("dask, compute into the client", compute_times)]:
        print(f"{label:34} {_spread(times)} {statistics.median(times) / median:8.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="*", default=[256, 1024, 4096, 10000],
                        help="chunk counts for the graph-building table (none: skip it)")
    parser.add_argument("--shape", type=int, nargs=4, default=[1, 3, 8192, 8192], metavar=("N", "C", "H", "W"),
                        help="the pyramid's input shape")
    parser.add_argument("--chunk", type=int, default=2048, help="the pyramid input's spatial chunk side")
    parser.add_argument("--levels", type=int, default=4, help="pyramid levels")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--numba-threads", type=int, default=None,
                        help="NUMBA_NUM_THREADS in each worker (default: all cores, as in a plain process)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure")
    parser.add_argument("--no-compute", action="store_true", help="skip the LocalCluster table")
    arguments = parser.parse_args(argv)
    if arguments.chunks:
        graph_building(arguments.chunks, arguments.repeat)
    if not arguments.no_compute:
        pyramid_compute(tuple(arguments.shape), arguments.chunk, arguments.levels, arguments.workers,
                        arguments.threads, arguments.numba_threads, arguments.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
