"""Meta-World through the control adapter (needs the ``metaworld`` extra; .ci/run installs it in
a venv of its own)."""

import numpy as np
import pytest

from meanflow_sci.errors import InputError
from meanflow_sci.tasks import control
from meanflow_sci.tasks.control import meta_world

needs_metaworld = pytest.mark.skipif(
    not meta_world.available(),
    reason="Meta-World tests need the metaworld extra in an environment of its own (it pins "
    'mujoco==3.3.0; pip install -e ".[metaworld]")',
)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MW = meta_world.ENV_ID


@needs_metaworld
def test_scripted_expert_dataset_has_success_and_variations():
    ds = control.collect(MW, 3, env_name="reach-v3", seed=0, progress=False)
    assert ds.attrs["expert"] == "scripted"
    assert ds.sizes["obs_dim"] == 39 and ds.sizes["act_dim"] == 4
    assert ds.success.dtype == bool and bool(ds.success.all())
    # An episode ends at its first success, well before Meta-World's 500-step limit.
    assert int(ds.length.max()) < 500
    assert ds.variation.shape == (3, 6)
    assert len(np.unique(ds.variation.values, axis=0)) == 3
    # The same seed gives the same variation; a seed from another block a different one.
    again = control.collect(MW, 1, env_name="reach-v3", seed=0, progress=False)
    np.testing.assert_array_equal(again.variation.values[0], ds.variation.values[0])
    held_out = control.collect(MW, 1, env_name="reach-v3", seed=10_000, progress=False)
    assert not np.allclose(held_out.variation.values[0], ds.variation.values[0])


@needs_metaworld
def test_success_is_read_from_info_and_ends_the_episode():
    expert = control.evaluate("scripted", MW, n_episodes=2, seed=10_000, env_name="reach-v3")
    assert expert["success_rate"] == 1.0
    assert max(expert["lengths"]) < 500
    lo, hi = expert["success_ci"]
    assert 0.0 < lo < 1.0 and hi == pytest.approx(1.0)
    rand = control.evaluate(
        "random", MW, n_episodes=2, seed=10_000, env_name="reach-v3", reference=None
    )
    assert rand["success_rate"] == 0.0 and rand["lengths"] == [500, 500]
    assert rand["success_ci"][0] == 0.0 and rand["success_ci"][1] > 0.1
    assert rand["action_change"] > expert["action_change"]


@needs_metaworld
def test_tiny_policy_trains_and_evaluates(tmp_path):
    ds = control.collect(MW, 2, env_name="reach-v3", seed=0, progress=False)
    policy = control.train_policy(ds, train={"max_steps": 3, "batch_size": 16}, progress=False)
    out = control.evaluate(
        policy, MW, n_episodes=2, seed=10_000, max_steps=16, env_name="reach-v3", reference=None
    )
    assert out["success_rate"] is not None and 0.0 <= out["success_rate"] <= 1.0
    assert out["lengths"] == [16, 16] or min(out["lengths"]) < 16
    assert out["latency_ms_median"] > 0
    back = control.load_policy(policy.save(tmp_path / "p"))
    assert back.env_id == MW and back.env_kwargs == {"env_name": "reach-v3"}
    # The task name travels with the policy: no env_name needed to evaluate it.
    again = control.evaluate(back, MW, n_episodes=1, seed=10_000, max_steps=4, reference=None)
    assert again["lengths"] == [4]


@needs_metaworld
def test_unknown_task_lists_valid_names():
    with pytest.raises(InputError, match="close matches.*'reach-v3'") as err:
        control.make_env(MW, env_name="reach")
    assert "window-open-v3" in str(err.value)
    with pytest.raises(InputError, match="env_name: .*needs a task name"):
        control.make_env(MW)
    with pytest.raises(InputError, match="one at a time"):
        control.make_env("Meta-World/MT10")


def test_scripted_expert_refused_outside_meta_world():
    with pytest.raises(InputError, match="'scripted' is Meta-World's own policy"):
        control.collect("InvertedPendulum-v5", 1, expert="scripted", progress=False)


@pytest.mark.skipif(meta_world.available(), reason="the metaworld extra is installed")
def test_meta_world_without_the_extra_says_how_to_install():
    with pytest.raises(ImportError, match=r"metaworld|mujoco 3\.3"):
        control.make_env(MW, env_name="reach-v3")
