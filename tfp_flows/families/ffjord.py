"""FFJORD: a continuous normalizing flow, the solution of an ODE whose dynamics are a network."""

from __future__ import annotations

import contextlib
import threading

import keras
import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import math as tfm

from tfp_flows.families.base import Argument, Flow, register_family
from tfp_flows.nets import MLP

__all__ = ["FFJORD", "ODEStep"]

# TFP's BDF solver (for stiff dynamics) is not offered: in TFP 0.25 it failed on FFJORD's
# augmented (state, log-det) state inside a graph, in its Newton iteration ("enters the loop
# with shape () but has shape <unknown> after one iteration").
SOLVERS = ("dopri5",)
TRACE_ESTIMATORS = ("exact", "hutchinson")
# The most entries an event may have when a trace is exact: the exact trace costs one backward
# pass per entry at every evaluation of the dynamics, so a 28x28 image would take 784 of them.
MAX_EXACT_TRACE_SIZE = 1024

def _rademacher(shape, dtype, seed=None):
    """Probes of +-1 with equal odds: Hutchinson's estimator with the least variance."""
    bits = tf.random.uniform(shape, maxval=2, dtype=tf.int32, seed=seed)
    return tf.cast(2 * bits - 1, dtype)


def _trace_augmentation(estimator: str):
    """TFP's `trace_augmentation_fn` for `estimator`: the exact trace of the Jacobian of the
    dynamics (one backward pass per entry) or Hutchinson's unbiased estimate (one backward
    pass, one Rademacher probe per example, drawn once per solve)."""
    if estimator == "exact":
        return tfb.ffjord.trace_jacobian_exact

    def hutchinson(ode_fn, state_shape, dtype):
        return tfb.ffjord.trace_jacobian_hutchinson(ode_fn, state_shape, dtype,
                                                    sample_fn=_rademacher)

    return hutchinson


class ODEStep(keras.layers.Layer):
    """One continuous-time step: x = z(T), where dz/dt = f(t, z(t), c) and z(0) is the latent.

    The dynamics f is an `MLP` (tanh hidden layers, smooth as an adaptive solver wants them)
    fed the state with the time and the context appended; its last layer starts at zero, so
    the step starts as the identity. The step's bijector is TFP's `tfb.FFJORD`: its log-det
    is the integral of the trace of df/dz along the path, integrated with the state by
    `solver`; gradients come from the adjoint method (`tfp.math.ode`), so training memory does
    not grow with the number of solver steps.

    Args:
        size: entries of the (flattened) event.
        hidden: width of the dynamics network's hidden layers.
        num_hidden: number of its hidden layers.
        solver: "dopri5" (Dormand-Prince, adaptive explicit Runge-Kutta of order 5).
        rtol, atol: the solver's relative and absolute error tolerances.
        integration_time: T, the time at which the state is the data.
        trace_estimator: the trace inside `FlowModel.train_step` ("hutchinson" or "exact").
        eval_trace_estimator: the trace everywhere else: log_prob, evaluate, export.
        context_size: size of the context vector the dynamics see (0: none).
    """

    def __init__(self, size: int, *, hidden: int, num_hidden: int, solver: str, rtol: float,
                 atol: float, integration_time: float, trace_estimator: str,
                 eval_trace_estimator: str, context_size: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.solver, self.rtol, self.atol = solver, rtol, atol
        self.integration_time = integration_time
        self.trace_estimator, self.eval_trace_estimator = trace_estimator, eval_trace_estimator
        self.context_size = context_size
        # Whether this thread is tracing a training step: a thread-local, because
        # MirroredStrategy traces each replica's step in a thread of its own.
        self._mode = threading.local()
        self.net = MLP(size, (hidden,) * num_hidden, activation="tanh",
                       context_size=1 + context_size, name=f"{self.name}_dynamics")
        self.net.build((None, size))

    def dynamics(self, time, state, context=None):
        """f(t, z, c): the time derivative of the state (batch..., size) at scalar time t."""
        time = tf.reshape(tf.cast(time, state.dtype), (1, 1))
        if context is not None:
            rows = tf.shape(context)[0]
            time = tf.concat([tf.tile(time, [rows, 1]), context], axis=-1)
        # In the state's dtype: a low-precision network (`precision=`) returns its own.
        return tf.cast(self.net(state, time), state.dtype)

    def _solve(self, ode_fn, initial_time, initial_state, solution_times):
        solver = tfm.ode.DormandPrince(rtol=self.rtol, atol=self.atol)
        return solver.solve(ode_fn, initial_time, initial_state,
                            solution_times=solution_times)

    @contextlib.contextmanager
    def training_pass(self):
        """Within it, on this thread, `bijectors` use `trace_estimator` (see `FFJORD`)."""
        previous = getattr(self._mode, "training", False)
        self._mode.training = True
        try:
            yield
        finally:
            self._mode.training = previous

    def bijectors(self, context=None, initialize: bool = False) -> list[tfb.Bijector]:
        training = getattr(self._mode, "training", False)
        estimator = self.trace_estimator if training else self.eval_trace_estimator
        # The context is closed over: no gradient reaches it (it is data, not a parameter).
        return [tfb.FFJORD(lambda time, state: self.dynamics(time, state, context),
                           ode_solve_fn=self._solve,
                           trace_augmentation_fn=_trace_augmentation(estimator),
                           final_time=self.integration_time, name=self.name)]


@register_family("ffjord")
class FFJORD(Flow):
    """FFJORD: a continuous normalizing flow, x = z(T) where dz/dt = f(t, z) and z(0) ~ N(0, I).

    log p(x) = log N(z(0)) + integral from 0 to T of tr(df/dz(t, z(t))) dt, solved backwards
    from z(T) = x together with the state by an ODE solver (TFP's `tfb.FFJORD` over
    `tfp.math.ode`). The dynamics f are a tanh `MLP` of the state, the time and the context.
    `num_blocks` such ODEs may be stacked. Images are flattened inside the flow (D = H * W *
    C), as NICE does.

    The trace: `log_prob`, `evaluate`, `predict`, sampling and the exported signatures use
    `eval_trace_estimator` ("exact" by default: exact log-densities, one backward pass per
    entry of the event at each evaluation of f); `fit` uses `trace_estimator` ("hutchinson"
    by default: the paper's unbiased estimate tr(A) = E[e^T A e] with one Rademacher probe e
    per example, one backward pass whatever D). The switch is `training_pass()`, which
    `FlowModel.train_step` enters. Probes come from TF's random ops: seed them with
    `keras.utils.set_random_seed` for reproducible training.

    Default sizes are the paper's toy-data model: 3 hidden layers of 64 units, tolerances 1e-5.

    [1] Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud. FFJORD: Free-form Continuous
        Dynamics for Scalable Reversible Generative Models. https://arxiv.org/abs/1810.01367
    [2] Chen, Rubanova, Bettencourt, Duvenaud. Neural Ordinary Differential Equations.
        https://arxiv.org/abs/1806.07366
    """

    arguments = (
        Argument("num_blocks", int, 1, "Stacked ODE blocks.", minimum=1),
        Argument("hidden", int, 64, "Hidden units of the dynamics networks.", minimum=1),
        Argument("num_hidden", int, 3, "Hidden layers per dynamics network.", minimum=1),
        Argument("solver", str, "dopri5", "The ODE solver: dopri5 (adaptive Runge-Kutta).",
                 choices=SOLVERS),
        Argument("rtol", float, 1e-5, "The solver's relative tolerance.", positive=True),
        Argument("atol", float, 1e-5, "The solver's absolute tolerance.", positive=True),
        Argument("integration_time", float, 1.0, "T: the ODE runs from the latent at t = 0 "
                 "to the data at t = T.", positive=True),
        Argument("trace_estimator", str, "hutchinson", "The trace of the dynamics' Jacobian "
                 "while fitting: hutchinson (stochastic, unbiased) or exact.",
                 choices=TRACE_ESTIMATORS),
        Argument("eval_trace_estimator", str, "exact", "The trace everywhere but fit "
                 "(log_prob, evaluate, export).", choices=TRACE_ESTIMATORS),
    )
    flattens_images = True

    def __init__(self, event_shape, num_blocks: int | None = None, hidden: int | None = None,
                 num_hidden: int | None = None, solver: str | None = None,
                 rtol: float | None = None, atol: float | None = None,
                 integration_time: float | None = None, trace_estimator: str | None = None,
                 eval_trace_estimator: str | None = None, **kwargs):
        super().__init__(event_shape, num_blocks=num_blocks, hidden=hidden,
                         num_hidden=num_hidden, solver=solver, rtol=rtol, atol=atol,
                         integration_time=integration_time, trace_estimator=trace_estimator,
                         eval_trace_estimator=eval_trace_estimator, **kwargs)
        if self.reversible:
            raise ValueError("FFJORD takes no reversible=True: the adjoint method already "
                             "trains it in memory that does not grow with depth.")
        size = self.flat_size
        exact = [name for name in ("trace_estimator", "eval_trace_estimator")
                 if getattr(self, name) == "exact"]
        if exact and size > MAX_EXACT_TRACE_SIZE:
            raise ValueError(
                f"FFJORD's exact trace costs one backward pass per entry at every evaluation "
                f"of the dynamics; event shape {self.event_shape} has {size} entries, more "
                f"than {MAX_EXACT_TRACE_SIZE}. Pass {' and '.join(f'{n}=' for n in exact)}"
                f"'hutchinson', or use a smaller event.")
        self.steps = [ODEStep(size, hidden=self.hidden, num_hidden=self.num_hidden,
                              solver=self.solver, rtol=self.rtol, atol=self.atol,
                              integration_time=self.integration_time,
                              trace_estimator=self.trace_estimator,
                              eval_trace_estimator=self.eval_trace_estimator,
                              context_size=self.context_size, name=f"ode_{i}")
                      for i in range(self.num_blocks)]

    @contextlib.contextmanager
    def training_pass(self):
        """Within it (on this thread), bijectors built for this flow use `trace_estimator`.

        The choice is made when a bijector is built, so a `tf.function` keeps the trace it
        was traced with: `FlowModel.train_step` traces inside this context, every other
        compiled method outside it.
        """
        with contextlib.ExitStack() as stack:
            for step in self.steps:
                stack.enter_context(step.training_pass())
            yield
