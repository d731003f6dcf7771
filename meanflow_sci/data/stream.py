"""Data that streams from disk into the trainer through a ``torch.utils.data.DataLoader``.

A *source* reads rows of the data on demand: :class:`ArraySource` (a lazily opened
``xarray.DataArray`` backed by NetCDF or zarr through dask, a numpy memmap, any array that slices
along its first axis), :class:`DatasetSource` (a map-style ``torch.utils.data.Dataset``) and
:class:`IterableSource` (an ``IterableDataset``). A :class:`DataStream` draws global batches from
a source in a seeded order that is a pure function of the batch count, so a resumed run reads
exactly the batches the uninterrupted run would have read, and each rank under ``torchrun`` reads
only its own rows of every global batch.

The order is a *block shuffle*: the data is cut into contiguous blocks (the file's chunks along
``sample``), each epoch permutes the blocks, groups them into windows of a few thousand samples
and permutes the samples inside each window. A batch then touches a few blocks, each read from
disk once per window and kept in a small cache, instead of scattering reads over the whole file.
A map-style Dataset has blocks of one sample and one window: a full permutation per epoch.

Example:
    >>> ds = xr.open_dataset("big.nc", chunks={"sample": 512})
    >>> stream = DataStream(ArraySource(ds["x"]), batch_size=256, seed=0)
    >>> x, cond = next(stream.batches(start=0))
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from meanflow_sci.errors import InputError, check_finite, describe

__all__ = ["ArraySource", "DatasetSource", "IterableSource", "DataStream", "is_lazy_xarray"]

# Samples per shuffle window (at least 16 batches), and a cap on the bytes a window holds.
WINDOW_SAMPLES = 8192
WINDOW_BYTES = 256 * 2**20
# Block size when the array has no chunking to follow (bytes per block).
BLOCK_BYTES = 4 * 2**20

Batch = tuple[torch.Tensor, "torch.Tensor | None"]


def is_lazy_xarray(obj: Any) -> bool:
    """True for an ``xarray`` object whose values are not in memory (dask or a file backend)."""
    variables = [obj.variable] if hasattr(obj, "variable") else []
    if hasattr(obj, "data_vars"):
        variables = [v.variable for v in obj.data_vars.values()]
    # ``_in_memory`` is False for lazily indexed backend arrays (open_dataset without chunks);
    # dask-backed variables have ``chunks``.
    return bool(variables) and all(
        v.chunks is not None or not getattr(v, "_in_memory", True) for v in variables
    )


def _as_float(values: Any) -> torch.Tensor:
    t = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
    return t.to(torch.float32)


class ArraySource:
    """Rows of an array read block by block: a lazy ``xarray.DataArray`` (first dim ``sample``),
    a dask array, a numpy array or memmap.

    Args:
        x: the array ``(N, *sample_shape)``.
        cond: None or an in-memory tensor with N rows (labels ``(N,)`` or vectors ``(N, C)``).
        block: rows per block; default: the chunk size along the first axis, else about 4 MB.
        rows: the row numbers in use (a split); default all.
    """

    def __init__(self, x: Any, cond: torch.Tensor | None = None, *, block: int | None = None,
                 rows: np.ndarray | None = None) -> None:  # fmt: skip
        self.x = x
        self.cond = cond
        shape = tuple(int(s) for s in x.shape)
        if len(shape) < 2 or shape[0] == 0:
            raise InputError(
                f"data: expected a non-empty array (N, *sample_shape), got {describe(x)}"
            )
        self.total, self.sample_shape = shape[0], shape[1:]
        self.block = int(block or self._default_block())
        self.rows = np.arange(self.total) if rows is None else np.asarray(rows, dtype=np.int64)
        self.n = len(self.rows)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_blocks = 2
        self.rows_read = 0  # rows read from the array so far (for tests and benchmarks)

    def _default_block(self) -> int:
        chunks = getattr(self.x, "chunks", None)
        if chunks:  # dask / xarray: ((c0, c1, ...), ...)
            first = chunks[0]
            return int(first[0] if isinstance(first, tuple) else first)
        per_row = 4 * math.prod(self.sample_shape)
        return max(1, min(self.total, BLOCK_BYTES // per_row))

    @property
    def row_bytes(self) -> int:
        return 4 * math.prod(self.sample_shape)

    def _read_block(self, b: int) -> np.ndarray:
        if b in self._cache:
            self._cache.move_to_end(b)
            return self._cache[b]
        lo, hi = b * self.block, min(self.total, (b + 1) * self.block)
        x = self.x
        # dask's synchronous scheduler: a DataLoader worker is a forked process, and a thread
        # pool inherited through fork can hold locks that no thread of the child releases.
        if hasattr(x, "isel"):
            values = x.isel({x.dims[0]: slice(lo, hi)}).compute(scheduler="synchronous").values
        elif hasattr(x, "compute"):
            values = x[lo:hi].compute(scheduler="synchronous")
        else:
            values = x[lo:hi]
        values = np.asarray(values, dtype=np.float32)
        self.rows_read += hi - lo
        self._cache[b] = values
        while len(self._cache) > self.cache_blocks:
            self._cache.popitem(last=False)
        return values

    def read(self, positions: np.ndarray) -> Batch:
        """The rows at ``positions`` (into :attr:`rows`), in that order."""
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        blocks = rows // self.block
        out = np.empty((len(rows), *self.sample_shape), dtype=np.float32)
        for b in np.unique(blocks):
            sel = blocks == b
            out[sel] = self._read_block(int(b))[rows[sel] - b * self.block]
        cond = None if self.cond is None else self.cond[torch.from_numpy(rows)]
        return torch.from_numpy(out), cond

    def block_ids(self) -> np.ndarray:
        """The blocks that hold :attr:`rows`, in order."""
        return np.unique(self.rows // self.block)

    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)``: the positions of each block's rows (rows are sorted)."""
        block_of = self.rows // self.block
        starts = np.flatnonzero(np.r_[True, block_of[1:] != block_of[:-1]])
        return starts, np.r_[starts[1:], self.n]

    def split(self, fraction: float, seed: int) -> tuple[ArraySource, ArraySource]:
        """``(train, val)``: whole blocks drawn at random for ``val`` (reads stay contiguous)."""
        ids = self.block_ids()
        n_val = int(round(fraction * len(ids)))
        if not 1 <= n_val < len(ids):
            raise InputError(
                f"val_fraction: expected a fraction leaving at least one of the {len(ids)} "
                f"blocks of {self.block} samples on each side of the split, got {fraction!r}"
            )
        val_ids = np.sort(np.random.default_rng(seed).permutation(ids)[:n_val])
        in_val = np.isin(self.rows // self.block, val_ids)
        return self._subset(self.rows[~in_val]), self._subset(self.rows[in_val])

    def _subset(self, rows: np.ndarray) -> ArraySource:
        return ArraySource(self.x, self.cond, block=self.block, rows=rows)

    def blocks(self) -> Iterator[Batch]:
        """Every row once, block by block (the statistics pass and validation)."""
        for lo, hi in zip(*self.runs(), strict=True):
            yield self.read(np.arange(lo, hi))
            self._cache.clear()

    def window_blocks(self) -> int:
        """Blocks per shuffle window."""
        samples = min(self.n, WINDOW_SAMPLES, max(1, WINDOW_BYTES // self.row_bytes))
        return max(1, math.ceil(samples / self.block))

    def set_cache(self, batch_size: int) -> None:
        # A batch lies in at most two windows: keep both windows' blocks.
        self.cache_blocks = 2 * self.window_blocks() + math.ceil(batch_size / self.block)


def _split_item(item: Any) -> tuple[Any, Any]:
    if isinstance(item, (tuple, list)):
        if len(item) not in (1, 2):
            raise InputError(
                f"data: expected Dataset items x, (x,) or (x, cond), got a {type(item).__name__} "
                f"of {len(item)} elements"
            )
        return item[0], (item[1] if len(item) == 2 else None)
    return item, None


def _stack(items: list[Any]) -> Batch:
    xs, cs = zip(*(_split_item(item) for item in items), strict=True)
    x = torch.stack([_as_float(v) for v in xs])
    if cs[0] is None:
        return x, None
    c = torch.stack([torch.as_tensor(np.asarray(v)) for v in cs])
    c = c.to(torch.long) if not c.is_floating_point() else c.to(torch.float32)
    return x, (c if c.ndim == 1 or not c.is_floating_point() else c.reshape(len(c), -1))


class DatasetSource:
    """A map-style ``torch.utils.data.Dataset`` whose items are ``x`` or ``(x, cond)``.

    ``cond`` per item is an integer class label or a float vector. Blocks are single samples.
    """

    def __init__(self, dataset: Dataset, *, rows: np.ndarray | None = None) -> None:
        try:
            total = len(dataset)
        except TypeError as exc:
            raise InputError(
                f"data: expected a map-style Dataset with __len__, got {describe(dataset)}"
            ) from exc
        if total == 0:
            raise InputError("data: expected a non-empty Dataset, got one of length 0")
        self.dataset, self.total = dataset, total
        self.rows = np.arange(total) if rows is None else np.asarray(rows, dtype=np.int64)
        self.n = len(self.rows)
        self.block = 1
        x, _ = _split_item(dataset[0])
        self.sample_shape = tuple(_as_float(x).shape)
        self.rows_read = 0

    def read(self, positions: np.ndarray) -> Batch:
        rows = self.rows[np.asarray(positions, dtype=np.int64)].tolist()
        self.rows_read += len(rows)
        many = getattr(self.dataset, "__getitems__", None)
        return _stack(many(rows) if many else [self.dataset[i] for i in rows])

    def split(self, fraction: float, seed: int) -> tuple[DatasetSource, DatasetSource]:
        n_val = int(round(fraction * self.n))
        if not 1 <= n_val < self.n:
            raise InputError(
                f"val_fraction: expected a fraction leaving at least one sample on each side of "
                f"the split of N={self.n}, got {fraction!r}"
            )
        perm = np.random.default_rng(seed).permutation(self.n)
        val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return (DatasetSource(self.dataset, rows=self.rows[train]),
                DatasetSource(self.dataset, rows=self.rows[val]))  # fmt: skip

    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(self.n), np.arange(1, self.n + 1)

    def blocks(self, size: int = 256) -> Iterator[Batch]:
        for lo in range(0, self.n, size):
            yield self.read(np.arange(lo, min(self.n, lo + size)))

    def window_blocks(self) -> int:
        return self.n

    def set_cache(self, batch_size: int) -> None:
        pass


class IterableSource:
    """A ``torch.utils.data.IterableDataset`` of items ``x`` or ``(x, cond)``.

    There is no random access: batches are consecutive items, an epoch is one pass, and a
    resumed run skips the batches already drawn in its epoch by reading them again (exact when
    the dataset yields the same items each pass). ``n`` is known after :meth:`blocks` has run.
    """

    def __init__(self, dataset: IterableDataset) -> None:
        self.dataset = dataset
        self.n: int | None = None
        self.block = 1
        first = next(iter(dataset), None)
        if first is None:
            raise InputError("data: expected a non-empty IterableDataset, got one that is empty")
        x, _ = _split_item(first)
        self.sample_shape = tuple(_as_float(x).shape)
        self.rows_read = 0

    def items(self, size: int) -> Iterator[Batch]:
        """One pass in batches of ``size`` (the last one may be short)."""
        chunk: list[Any] = []
        for item in self.dataset:
            chunk.append(item)
            if len(chunk) == size:
                self.rows_read += size
                yield _stack(chunk)
                chunk = []
        if chunk:
            self.rows_read += len(chunk)
            yield _stack(chunk)

    def blocks(self) -> Iterator[Batch]:
        count = 0
        for x, c in self.items(256):
            count += len(x)
            yield x, c
        self.n = count


class _Plan:
    """Global batch ``k`` as positions into the source: a pure function of ``(seed, k)``."""

    def __init__(self, source: Any, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = source.n, batch_size, seed
        self.per_epoch = self.n // batch_size
        if self.per_epoch < 1:
            raise InputError(
                f"batch_size: expected at most the {self.n} training samples, got {batch_size}"
            )
        self._starts, self._ends = source.runs()  # positions of each block, in file order
        self.window = source.window_blocks()
        self._epoch: tuple[int, np.ndarray] | None = None

    def epoch_order(self, epoch: int) -> np.ndarray:
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        rng = np.random.default_rng([self.seed, epoch])
        blocks = rng.permutation(len(self._starts))
        lens = self._ends[blocks] - self._starts[blocks]
        ends = np.cumsum(lens)
        # The positions of the permuted blocks, concatenated, then shuffled window by window.
        order = np.repeat(self._starts[blocks] - (ends - lens), lens) + np.arange(ends[-1])
        for lo in range(0, len(blocks), self.window):
            a = ends[lo - 1] if lo else 0
            b = ends[min(lo + self.window, len(blocks)) - 1]
            order[a:b] = rng.permutation(order[a:b])
        self._epoch = (epoch, order)
        return order

    def batch(self, k: int) -> np.ndarray:
        epoch, pos = divmod(k, self.per_epoch)
        return self.epoch_order(epoch)[pos * self.batch_size : (pos + 1) * self.batch_size]


class _Batches:
    """The DataLoader's batch sampler: this rank's positions of global batches start, start+1..."""

    def __init__(self, plan: _Plan, start: int, rank: int, world: int) -> None:
        self.plan, self.start, self.rank, self.world = plan, start, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        share = self.plan.batch_size // self.world
        k = self.start
        while True:
            yield self.plan.batch(k)[self.rank * share : (self.rank + 1) * share].tolist()
            k += 1


class _Reader(Dataset):
    """What the DataLoader's workers call: rows of the source, normalised."""

    def __init__(self, source: Any, transform: Callable[[Batch], Batch]) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return self.source.n

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])

    def __getitems__(self, positions: list[int]) -> Batch:
        return self.transform(self.source.read(np.asarray(positions)))


class _IterReader(IterableDataset):
    """The iterable path: consecutive batches from ``start``, epoch after epoch, one rank's rows."""

    def __init__(self, stream: DataStream, start: int, rank: int, world: int) -> None:
        self.stream, self.start, self.rank, self.world = stream, start, rank, world

    def __iter__(self) -> Iterator[Batch]:
        s, share = self.stream, self.stream.batch_size // self.world
        rows = slice(self.rank * share, (self.rank + 1) * share)
        per_epoch = s.source.n // s.batch_size
        epoch, skip = divmod(self.start, per_epoch)
        while True:
            batches = s.source.items(s.batch_size)
            for k, (x, c) in enumerate(batches):
                if k >= per_epoch:
                    break
                if k < skip:
                    continue
                yield s.transform((x[rows], None if c is None else c[rows]))
            epoch, skip = epoch + 1, 0


def _identity(batch: Batch) -> Batch:
    return batch


class DataStream:
    """Global batches from a source, in a seeded order, through a ``DataLoader``.

    Args:
        source: an :class:`ArraySource`, :class:`DatasetSource` or :class:`IterableSource`.
        batch_size: the global batch size.
        seed: seeds the order (epoch ``e`` is permuted by ``numpy.random.default_rng([seed,
            e])``).
        num_workers: DataLoader worker processes (0 reads in the training process).
        transform: applied to each ``(x, cond)`` batch after reading (the normalisers).
    """

    def __init__(self, source: Any, batch_size: int, seed: int = 0, *, num_workers: int = 0,
                 transform: Callable[[Batch], Batch] | None = None) -> None:  # fmt: skip
        self.source, self.batch_size, self.seed = source, int(batch_size), int(seed)
        self.num_workers = int(num_workers)
        self.transform = transform or _identity
        self.sample_shape = tuple(source.sample_shape)

    @property
    def n(self) -> int | None:
        return self.source.n

    def check(self) -> None:
        """Raise ``InputError`` if the batch size does not fit the data."""
        if self.n is not None and self.batch_size > self.n:
            raise InputError(
                f"batch_size: expected at most the {self.n} training samples, got {self.batch_size}"
            )

    def batches(self, start: int = 0, *, rank: int = 0, world: int = 1,
                pin_memory: bool = False) -> Iterator[Batch]:  # fmt: skip
        """This rank's share of global batches ``start, start + 1, ...`` (never ends)."""
        self.check()
        # A DataLoader draws its workers' base seed from this generator, else from the global
        # RNG, which would shift the objective's draws after a resume.
        gen = torch.Generator().manual_seed(self.seed + start)
        if isinstance(self.source, IterableSource):
            loader = DataLoader(_IterReader(self, start, rank, world), batch_size=None,
                                pin_memory=pin_memory, generator=gen)  # fmt: skip
        else:
            self.source.set_cache(self.batch_size)
            plan = _Plan(self.source, self.batch_size, self.seed)
            loader = DataLoader(
                _Reader(self.source, self.transform),
                batch_sampler=_Batches(plan, start, rank, world),
                collate_fn=_identity,
                num_workers=self.num_workers,
                pin_memory=pin_memory,
                persistent_workers=False,
                generator=gen,
            )
        return iter(loader)

    def sequential(self, size: int) -> Iterator[Batch]:
        """Every sample once, in storage order, normalised (validation)."""
        if isinstance(self.source, IterableSource):
            yield from (self.transform(b) for b in self.source.items(size))
            return
        for lo in range(0, self.source.n, size):
            pos = np.arange(lo, min(self.source.n, lo + size))
            yield self.transform(self.source.read(pos))


def scan(source: Any, name: str = "data") -> Iterator[Batch]:
    """Every row of ``source`` once, checked finite (the statistics pass)."""
    seen = 0
    for x, c in source.blocks():
        try:
            check_finite(name, x)
        except InputError as exc:
            raise InputError(f"{exc} (in samples {seen}..{seen + len(x) - 1})") from None
        seen += len(x)
        yield x, c
