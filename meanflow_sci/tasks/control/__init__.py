"""Control trajectory synthesis on gymnasium MuJoCo environments.

Experts are computed offline from the simulator (LQR, IK + PD, MPPI), their demonstrations become
an ``xarray.Dataset`` (:func:`collect`), an action-chunk or state-action trajectory generator is
fitted with :func:`meanflow_sci.fit` (:func:`train_policy`) and sampled in one step, and
:func:`evaluate` scores it closed loop (return, success, normalised score, decision latency).

Example:
    >>> from meanflow_sci.tasks import control
    >>> ds = control.collect("InvertedPendulum-v5", 10, expert_kwargs={"gain_jitter": 0.3})
    >>> policy = control.train_policy(ds, train={"max_steps": 1000})
    >>> control.evaluate(policy, "InvertedPendulum-v5", n_episodes=5)["normalised_score"]
"""

from meanflow_sci.tasks.control.collect import collect, episode_returns, load_dataset
from meanflow_sci.tasks.control.envs import ENVS, make_env
from meanflow_sci.tasks.control.evaluate import evaluate, reference_returns
from meanflow_sci.tasks.control.experts import EXPERTS, make_expert
from meanflow_sci.tasks.control.metrics import branch_statistics
from meanflow_sci.tasks.control.policy import ChunkPolicy, PolicyConfig, load_policy, train_policy

__all__ = [
    "ChunkPolicy",
    "ENVS",
    "EXPERTS",
    "PolicyConfig",
    "branch_statistics",
    "collect",
    "episode_returns",
    "evaluate",
    "load_dataset",
    "load_policy",
    "make_env",
    "make_expert",
    "reference_returns",
    "train_policy",
]
