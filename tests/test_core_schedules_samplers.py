"""λ schedules, (t, r) samplers and the one/k-step samplers."""

import math
from statistics import NormalDist

import pytest
import torch

import meanflow_sci
from meanflow_sci.core import SCHEDULES, make_schedule, make_time_sampler, sample
from meanflow_sci.core.schedules import CosineWarmup, LinearWarmup, StepWarmup
from meanflow_sci.core.time_samplers import LogitNormalTimeSampler, UniformTimeSampler
from meanflow_sci.errors import InputError


def test_linear_warmup_is_the_papers_curriculum():
    s = LinearWarmup(100)
    assert [s(k) for k in (0, 25, 100, 1000)] == [0.0, 0.25, 1.0, 1.0]
    assert LinearWarmup(0)(0) == 1.0


def test_cosine_and_step_shapes():
    c = CosineWarmup(100)
    assert c(0) == 0.0 and math.isclose(c(50), 0.5) and c(100) == 1.0
    st = StepWarmup(100, n_levels=4)
    assert [st(k) for k in (0, 24, 25, 60, 99, 100)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_is_monotone_in_unit_interval_and_round_trips(name):
    kw = {"value": 0.3} if name == "constant" else {"warmup_steps": 50}
    s = make_schedule(name, **kw)
    vals = [s(k) for k in range(0, 80)]
    assert all(0.0 <= v <= 1.0 for v in vals)
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    assert make_schedule(s.config()) == s


def test_schedule_errors():
    with pytest.raises(InputError, match="warmup_steps: expected an integer >= 0, got -5"):
        LinearWarmup(-5)
    with pytest.raises(InputError, match="warmup_steps"):
        make_schedule("cosine", warmup_steps=-1)
    with pytest.raises(InputError, match=r"lam: expected one of \['constant', 'cosine'"):
        make_schedule("exponential")
    with pytest.raises(InputError, match="lam: expected a value in"):
        make_schedule(-0.1)
    assert make_schedule(lambda k: 0.5)(3) == 0.5


@pytest.mark.parametrize("sampler", [LogitNormalTimeSampler(), UniformTimeSampler(0.5)])
def test_time_samplers_order_and_tie_fraction(sampler):
    torch.manual_seed(0)
    ts = sampler(20000)
    assert ts.t.shape == ts.r.shape == (20000,)
    assert bool((ts.r <= ts.t).all()) and bool((ts.t <= 1).all()) and bool((ts.r >= 0).all())
    frac = (ts.r < ts.t).float().mean().item()
    assert abs(frac - sampler.ratio_r_neq_t) < 0.02


@pytest.mark.parametrize(
    "sampler",
    [LogitNormalTimeSampler(mu=0.3, sigma=1.6, ratio_r_neq_t=0.5), UniformTimeSampler(0.7)],
)
def test_time_samplers_round_trip_and_reproduce_with_a_generator(sampler):
    assert make_time_sampler(sampler.config()) == sampler
    a = sampler(64, generator=torch.Generator().manual_seed(1))
    b = sampler(64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.r, b.r) and torch.equal(a.t, b.t)
    # The options measured without a gain (docs/ablations.md) are gone.
    for removed in ({"ratio_r_zero": 0.25}, {"r_mu": -4.0}, {"r_sigma": 1.6}):
        with pytest.raises(TypeError):
            type(sampler)(**removed)


def test_logit_normal_r_is_the_smaller_of_two_draws():
    torch.manual_seed(0)
    ts = LogitNormalTimeSampler(mu=-0.6, sigma=1.6, ratio_r_neq_t=1.0)(50000)
    # P(min <= m) = 1 - (1 - p)², so the median of r sits at p = 1 - sqrt(0.5).
    z = NormalDist().inv_cdf(1 - math.sqrt(0.5))
    assert abs(torch.quantile(ts.r, 0.5).item() - 1 / (1 + math.exp(-(-0.6 + 1.6 * z)))) < 0.01
    assert bool((ts.r < ts.t).all())


def test_logit_normal_median_and_registry():
    torch.manual_seed(0)
    ts = LogitNormalTimeSampler(mu=-0.4, sigma=1.0, ratio_r_neq_t=0.0)(50000)
    # With ties everywhere t = r = max of two draws: P(max <= m) = p², median at p² = 0.5.
    q = torch.quantile(ts.t, 0.5).item()
    z = NormalDist().inv_cdf(math.sqrt(0.5))
    assert abs(q - 1 / (1 + math.exp(-(-0.4 + z)))) < 0.01
    assert make_time_sampler({"name": "uniform", "ratio_r_neq_t": 0.1}) == UniformTimeSampler(0.1)
    with pytest.raises(InputError, match="time_sampler: expected one of"):
        make_time_sampler("beta")
    with pytest.raises(InputError, match="ratio_r_neq_t"):
        UniformTimeSampler(1.5)


class ConstantVelocity(torch.nn.Module):
    """u = c: every sampler moves noise by exactly -c."""

    def forward(self, x, r, t, cond=None):
        self.calls = getattr(self, "calls", 0) + 1
        return torch.full_like(x, 0.5)


@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("mode", ["mean", "flow"])
def test_samplers_integrate_constant_velocity(steps, mode):
    model = ConstantVelocity()
    noise = torch.randn(4, 3)
    out = sample(model, noise, steps=steps, mode=mode)
    torch.testing.assert_close(out, noise - 0.5)
    assert model.calls == steps


def test_mean_sampler_passes_the_time_grid():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, r, t, cond=None):
            seen.append((round(r[0].item(), 4), round(t[0].item(), 4)))
            return torch.zeros_like(x)

    sample(Spy(), torch.randn(2, 2), steps=4)
    assert seen == [(0.75, 1.0), (0.5, 0.75), (0.25, 0.5), (0.0, 0.25)]
    seen.clear()
    sample(Spy(), torch.randn(2, 2), time_grid=[1.0, 0.3, 0.0])
    assert seen == [(0.3, 1.0), (0.0, 0.3)]


def test_sampler_errors():
    model = ConstantVelocity()
    with pytest.raises(InputError, match="steps: expected an integer >= 1, got 0"):
        sample(model, torch.randn(2, 2), steps=0)
    with pytest.raises(InputError, match="mode: expected one of"):
        sample(model, torch.randn(2, 2), mode="ddim")
    with pytest.raises(InputError, match="time_grid: expected strictly decreasing"):
        sample(model, torch.randn(2, 2), time_grid=[1.0, 0.5, 0.7, 0.0])
    with pytest.raises(InputError, match="cond: expected a leading batch dimension of 2"):
        sample(model, torch.randn(2, 2), torch.randn(3, 1))


def test_every_public_name_imports():
    for name in meanflow_sci.__all__:
        assert getattr(meanflow_sci, name) is not None, name
    import meanflow_sci.core as core

    for name in core.__all__:
        assert hasattr(core, name), name
