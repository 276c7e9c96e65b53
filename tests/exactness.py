"""What the exactness tests share: weights moved off their initial values (the conditioners
start at zero, where every coupling is the identity), and the brute-force density a flow's
log_prob is compared with."""

import numpy as np
import tensorflow as tf


def move_off_init(variables, scale: float, seed=0) -> None:
    """Adds `scale` x standard normal noise to each of `variables`, drawn from
    `np.random.default_rng(seed)` (`seed` may be a Generator, which then goes on being used)."""
    rng = np.random.default_rng(seed)
    for variable in variables:
        value = variable.numpy()
        variable.assign(value + scale * rng.standard_normal(value.shape).astype(value.dtype))


def brute_force_log_prob(model, x):
    """log N(z; 0, I) + log|det dz/dx|, with the Jacobian of the model's own map by autodiff.

    The bijector runs eagerly: differentiating the compiled `model.encode` would trace its
    backward function first, which took 3x the CPU time of these eager passes (Glow with
    splines on 4x4 images). A loop of gradients costs about half the CPU time of pfor's
    vectorisation here (pfor converts the whole flow's graph, splines included, for at most 16
    outputs)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z = model.bijector.inverse(x)
    n = x.shape[0]
    jacobian = tf.reshape(tape.batch_jacobian(z, x, experimental_use_pfor=False),
                          (n, -1, int(np.prod(x.shape[1:]))))
    z = tf.reshape(z, (n, -1))
    base = -0.5 * tf.reduce_sum(z**2, axis=1) - 0.5 * z.shape[1] * np.log(2 * np.pi)
    return base + tf.linalg.slogdet(jacobian)[1]
