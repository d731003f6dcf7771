"""Task adapters: ODE trajectories (``tasks.ode``), MuJoCo control (``tasks.control``) and images
(``tasks.images``). Each adapter makes data, scores generated samples and provides baselines; the
models themselves are trained through ``meanflow_sci.fit``.
"""
