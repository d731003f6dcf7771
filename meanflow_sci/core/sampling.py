"""Samplers: one and k steps of the average velocity, Euler for flow models, regression.

All samplers start from ``noise`` at ``t = 1`` and return data at ``t = 0``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import InputError, check_batch_match, check_choice, check_positive_int

__all__ = ["SAMPLING_MODES", "uniform_time_grid", "sample"]

SAMPLING_MODES = ("mean", "flow", "regression")


def uniform_time_grid(steps: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The uniform grid ``1 = t_0 > t_1 > ... > t_steps = 0`` of length ``steps + 1``."""
    check_positive_int("steps", steps)
    return torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=dtype)


def _check_grid(grid: Sequence[float] | torch.Tensor, device, dtype) -> torch.Tensor:
    g = torch.as_tensor(grid, device=device, dtype=dtype)
    if g.ndim != 1 or g.numel() < 2:
        raise InputError(
            f"time_grid: expected a 1-D grid of at least 2 times, got {tuple(g.shape)}"
        )
    if not (float(g[0]) == 1.0 and float(g[-1]) == 0.0 and bool((g[1:] < g[:-1]).all())):
        raise InputError(
            "time_grid: expected strictly decreasing times from 1 to 0, "
            f"got {[round(float(v), 4) for v in g[:6]]}{'...' if g.numel() > 6 else ''}"
        )
    return g


@torch.no_grad()
def sample(
    model: Callable[..., torch.Tensor],
    noise: torch.Tensor,
    cond: torch.Tensor | None = None,
    *,
    steps: int = 1,
    mode: str = "mean",
    time_grid: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Map ``noise`` (``(B, ...)``, the state at ``t = 1``) to data at ``t = 0``.

    Args:
        model: a backbone ``model(x, r, t, cond) -> u``.
        noise: starting state, shaped like the data.
        cond: conditioning of batch size ``B`` or ``None``.
        steps: number of network evaluations (ignored by ``"regression"``).
        mode: ``"mean"`` walks the grid with the average velocity,
            ``z <- z - (t_i - t_{i+1}) u(z, r=t_{i+1}, t=t_i)``; ``"flow"`` takes Euler steps of the
            instantaneous velocity ``u(z, r=t_i, t=t_i)``; ``"regression"`` returns
            ``-u(0, r=0, t=1)`` (the one-step sample of zero noise).
        time_grid: optional decreasing grid from 1 to 0 (overrides ``steps``).

    Returns:
        The generated batch, shaped like ``noise``.

    Example:
        >>> x = sample(model, torch.randn(16, 2))            # one step
        >>> x4 = sample(model, torch.randn(16, 2), steps=4)  # four steps
    """
    check_choice("mode", mode, SAMPLING_MODES)
    if not isinstance(noise, torch.Tensor) or not noise.is_floating_point() or noise.ndim < 2:
        raise InputError(f"noise: expected a floating tensor of shape (B, ...), got {noise!r:.80}")
    check_batch_match("cond", cond, noise.shape[0], other="noise")
    b = noise.shape[0]
    if mode == "regression":
        zeros = noise.new_zeros(b)
        return -model(torch.zeros_like(noise), zeros, torch.ones_like(zeros), cond)
    if time_grid is None:
        grid = uniform_time_grid(steps, device=noise.device, dtype=noise.dtype)
    else:
        grid = _check_grid(time_grid, noise.device, noise.dtype)
    z = noise
    for i in range(grid.numel() - 1):
        t_i, t_next = grid[i], grid[i + 1]
        t = t_i.expand(b)
        r = t if mode == "flow" else t_next.expand(b)
        z = z - (t_i - t_next) * model(z, r, t, cond).to(z.dtype)
    return z
