"""The ``meanflow-sci`` command: train a model from a file, sample from it, show what it holds.

Example:
    $ meanflow-sci train trajectories.nc --var traj --out runs/osc --steps 2000
    $ meanflow-sci sample runs/osc --out samples.nc --n 512 --seed 0
    $ meanflow-sci info runs/osc
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from meanflow_sci.errors import InputError, MeanFlowError

__all__ = ["main", "build_parser", "read_array"]

_DATA_SUFFIXES = (".npy", ".npz", ".nc", ".zarr")
_OUT_SUFFIXES = (".npy", ".nc")

_EPILOG = """\
examples:
  # fit a one-step generator to samples stored as a (N, D) numpy array
  meanflow-sci train points.npy --out runs/points --steps 2000
  # fit trajectories (sample, time, state) from a netCDF file, conditioned on parameters
  meanflow-sci train sims.nc --var traj --cond params.npy --out runs/sims
  # draw 512 samples with one network evaluation each
  meanflow-sci sample runs/points --out samples.npy --n 512 --seed 0
  # conditional models take one sample per row of --cond
  meanflow-sci sample runs/sims --cond new_params.npy --out new.nc
  meanflow-sci info runs/sims
"""


def read_array(
    path: str | os.PathLike, var: str | None = None, *, arg: str = "DATA", var_arg: str = "--var"
) -> Any:
    """Read a ``.npy`` / ``.npz`` array, or open a ``.nc`` file or ``.zarr`` store lazily.

    ``.npz`` files with several arrays and ``.nc`` / ``.zarr`` data with several variables need
    ``var``; with ``var`` the (lazy) ``xarray.Dataset`` is returned (so ``fit`` keeps the
    variable name), with one variable that lazy ``DataArray``. NetCDF and zarr values stay on
    disk until ``fit`` streams them in batches.

    Raises:
        InputError: missing or unreadable file, unknown suffix, or an ambiguous/unknown ``var``.
    """
    p = Path(path)
    if p.suffix not in _DATA_SUFFIXES:
        raise InputError(f"{arg}: expected a file ending in {list(_DATA_SUFFIXES)}, got {str(p)!r}")
    if not (p.is_dir() if p.suffix == ".zarr" else p.is_file()):
        what = "zarr store (a folder)" if p.suffix == ".zarr" else "file"
        raise InputError(f"{arg}: expected an existing {what}, got {str(p)!r}")
    try:
        if p.suffix == ".npy":
            # allow_pickle=False: a data file must never run code.
            return np.load(p, allow_pickle=False)
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as npz:
                names = sorted(npz.files)
                if var is None and len(names) == 1:
                    var = names[0]
                if var not in names:
                    raise InputError(
                        f"{var_arg}: expected one of the arrays {names} in {str(p)!r}, got {var!r}"
                    )
                return npz[var]
        import xarray as xr

        ds = xr.open_zarr(p) if p.suffix == ".zarr" else xr.open_dataset(p)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - every backend has its own errors for a bad file
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{arg}: could not read {str(p)!r}: {detail}") from exc
    names = sorted(str(k) for k in ds.data_vars)
    if var is None:
        if len(names) != 1:
            raise InputError(
                f"{var_arg}: expected one of the variables {names} in {str(p)!r}, got None"
            )
        return ds[names[0]]
    if var not in ds.data_vars:
        raise InputError(
            f"{var_arg}: expected one of the variables {names} in {str(p)!r}, got {var!r}"
        )
    return ds


def _as_numpy(result: Any) -> np.ndarray:
    """The values of a numpy / torch / xarray result as a numpy array."""
    if hasattr(result, "data_vars"):  # a Dataset holding the one fitted variable
        result = next(iter(result.data_vars.values()))
    if hasattr(result, "dims"):  # a DataArray
        return np.asarray(result.values)
    return result.numpy() if hasattr(result, "numpy") else np.asarray(result)


def _write_output(chunks: Iterator[Any], n: int, out: Path) -> None:
    """Write ``n`` samples arriving in pieces to ``.npy`` or ``.nc``, one piece at a time.

    The file is written under a temporary name and renamed into place, so a failed write never
    leaves a partial file at ``out`` nor destroys a file already there. ``.npy`` output is a
    memory-mapped array filled piece by piece; NetCDF output grows an unlimited ``sample``
    dimension piece by piece (netCDF4; without it the pieces are joined in memory first).
    """
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    try:
        if out.suffix == ".npy":
            _write_npy(chunks, n, tmp)
        else:
            _write_netcdf(chunks, tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_npy(chunks: Iterator[Any], n: int, path: Path) -> None:
    target, lo = None, 0
    for piece in chunks:
        values = _as_numpy(piece)
        if target is None:
            shape = (n, *values.shape[1:])
            target = np.lib.format.open_memmap(path, mode="w+", dtype=values.dtype, shape=shape)
        target[lo : lo + len(values)] = values
        lo += len(values)
    target.flush()
    del target


def _as_dataset(piece: Any) -> Any:
    import xarray as xr

    if hasattr(piece, "data_vars"):
        return piece
    if not hasattr(piece, "dims"):
        arr = _as_numpy(piece)
        dims = ("sample", *(f"dim_{i}" for i in range(1, arr.ndim)))
        piece = xr.DataArray(arr, dims=dims, coords={"sample": np.arange(len(arr))})
    return piece.to_dataset(name=piece.name or "samples")


def _write_netcdf(chunks: Iterator[Any], path: Path) -> None:
    try:
        import netCDF4
    except ImportError:  # scipy's netCDF3 writer cannot append: join the pieces first
        import xarray as xr

        xr.concat([_as_dataset(p) for p in chunks], dim="sample").to_netcdf(path)
        return
    pieces = iter(chunks)
    first = _as_dataset(next(pieces))
    first.to_netcdf(path, engine="netcdf4", unlimited_dims=["sample"])
    lo = first.sizes["sample"]
    with netCDF4.Dataset(path, "a") as nc:
        for piece in pieces:
            ds = _as_dataset(piece)
            hi = lo + ds.sizes["sample"]
            for name, var in ds.variables.items():
                if var.dims and var.dims[0] == "sample":
                    nc.variables[name][lo:hi] = var.values
            lo = hi


def _json_group(flag: str, text: str | None) -> Any:
    """A group option: a plain name (``mlp``, ``fm``) or a JSON object of fields."""
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{flag}: expected a name or a JSON object, got {text!r}") from exc
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    from meanflow_sci.api import check_save_path, fit

    out = check_save_path(args.out, name="--out")
    data = read_array(args.data, args.var)
    var = args.var if hasattr(data, "data_vars") else None
    cond = (
        None
        if args.cond is None
        else read_array(args.cond, args.cond_var, arg="--cond", var_arg="--cond-var")
    )
    if hasattr(cond, "data_vars"):
        cond = cond[args.cond_var]
    train = _json_group("--train", args.train) or {}
    for key, value in (("max_steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr)):
        if value is not None:
            train[key] = value
    fitted = fit(
        data,
        cond,
        recipe=args.recipe,
        backbone=_json_group("--backbone", args.backbone),
        objective=_json_group("--objective", args.objective),
        train=train or None,
        var=var,
        device=args.device,
        seed=args.seed,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        progress=not args.quiet,
    )
    fitted.save(out)
    print(f"{fitted!r}\ntrained in {fitted.train_time_s:.1f} s; saved to {out}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from meanflow_sci.api import load

    out = Path(args.out)
    if out.suffix not in _OUT_SUFFIXES:
        raise InputError(
            f"--out: expected a file ending in {list(_OUT_SUFFIXES)}, got {str(out)!r}"
        )
    if out.is_dir():
        raise InputError(f"--out: expected a file path, got the folder {str(out)!r}")
    fitted = load(args.model)
    cond = (
        None
        if args.cond is None
        else read_array(args.cond, args.cond_var, arg="--cond", var_arg="--cond-var")
    )
    if hasattr(cond, "data_vars"):
        cond = cond[args.cond_var]
    chunks = fitted.sample_chunks(args.n, cond=cond, steps=args.steps, seed=args.seed)
    n = args.n if args.n is not None else int(np.shape(cond)[0])
    _write_output(chunks, n, out)
    print(f"wrote {n} samples to {out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from meanflow_sci.api import load

    fitted = load(args.model)
    info = fitted.config()
    history = info.pop("history")
    info["history_rows"] = len(history)
    info["last_log"] = history[-1] if history else None
    print(repr(fitted))
    if fitted.recipe is not None:
        print(f"recipe: {fitted.recipe.name} ({fitted.recipe.summary})")
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``meanflow-sci``."""
    parser = argparse.ArgumentParser(
        prog="meanflow-sci",
        description="One-step generative modelling with Modular MeanFlow: fit a generator to "
        "samples in a file, then draw new samples with one network evaluation each.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tr = sub.add_parser(
        "train",
        help="fit a model to a data file and save it",
        description="Fit a one-step generator to DATA and save it to --out. DATA is a .npy or "
        ".npz array of shape (N, ...) or a .nc file whose variable has 'sample' as first dim. "
        "The setting is a recipe chosen from the data's shape and condition (--recipe).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument("data", metavar="DATA", help="training data (.npy, .npz or .nc)")
    tr.add_argument("--out", required=True, help="folder to save the model to")
    tr.add_argument("--var", help="variable in a .nc/.npz file with several (e.g. traj)")
    tr.add_argument(
        "--cond",
        help="conditioning file with one row per sample: integer labels (N,) or floats (N, ...)",
    )
    tr.add_argument("--cond-var", help="variable of the --cond file, if it has several")
    tr.add_argument(
        "--recipe",
        default="auto",
        help="auto (default: chosen from the data, see README), vectors, trajectory_map, "
        "trajectory_ensemble, trajectory_forecast, policy, images, images_large",
    )
    tr.add_argument(
        "--backbone",
        metavar="NAME|JSON",
        help="change the recipe's network: a name (mlp, unet1d, transformer, unet2d) or JSON "
        'such as \'{"hidden": 128, "prediction": "x"}\'',
    )
    tr.add_argument(
        "--objective",
        metavar="NAME|JSON",
        help="change the recipe's objective: mmf, fm, regression, or JSON such as "
        '\'{"lam": "linear"}\'',
    )
    tr.add_argument(
        "--train",
        metavar="JSON",
        help="change the recipe's trainer options, e.g. '{\"ema_decay\": 0.99}'",
    )
    tr.add_argument("--steps", type=int, help="optimizer steps (default: the recipe's)")
    tr.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    tr.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    tr.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    tr.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tr.add_argument("--checkpoint-dir", help="folder for training checkpoints")
    tr.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in it"
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    sa = sub.add_parser(
        "sample",
        help="draw samples from a saved model",
        description="Draw samples from the model saved in MODEL and write them to --out "
        "(.nc keeps the dims, coords and attrs of a model fitted on xarray data; .npy writes "
        "the plain array).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sa.add_argument("model", metavar="MODEL", help="folder written by 'meanflow-sci train'")
    sa.add_argument("--out", required=True, help="output file (.npy or .nc)")
    sa.add_argument(
        "--n", type=int, help="number of samples (default for conditional models: rows of --cond)"
    )
    sa.add_argument("--cond", help="conditioning file, one row per sample (conditional models)")
    sa.add_argument("--cond-var", help="variable of the --cond file, if it has several")
    sa.add_argument(
        "--steps", type=int, default=1, help="network evaluations per sample (default 1)"
    )
    sa.add_argument("--seed", type=int, help="random seed for reproducible samples")
    sa.set_defaults(func=_cmd_sample)

    info = sub.add_parser(
        "info",
        help="print a saved model's configuration",
        description="Print the backbone, objective, data description and training summary of "
        "a saved model.",
    )
    info.add_argument("model", metavar="MODEL", help="folder written by 'meanflow-sci train'")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MeanFlowError as exc:
        print(f"meanflow-sci {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
