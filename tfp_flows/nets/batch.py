"""Any number of leading batch axes through layers written for one.

TFP hands a bijector's conditioner whatever its distribution is asked for: one unbatched event
(`sample()`, or a `JointDistribution` learning its shapes), a batch, or sample shape `(a, b)`
on top of it. The conditioners compute on one batch axis (a matmul needs a matrix, a
convolution a rank-4 tensor); the leading axes are flattened into one and restored after.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = ["on_one_batch_axis"]


def _context_per_example(context, batch: tf.Tensor, batch_static: tf.TensorShape, name: str):
    """`context` (..., K) broadcast to the inputs' batch shape: (*batch, K).

    The context's leading axes pair with the inputs' batch axes, aligned on the right as in
    numpy; they may broadcast (size 1) but not add axes to the inputs, except leading axes of
    size 1, which are dropped (one context for any inputs).
    """
    context = tf.convert_to_tensor(context)
    shape = context.shape[:-1]
    extra = max(shape.rank - batch_static.rank, 0)
    try:
        compatible = all(d is None or d == 1 for d in shape[:extra]) and tf.broadcast_static_shape(
            shape[extra:], batch_static).is_compatible_with(batch_static)
    except ValueError:
        compatible = False
    if not compatible:
        raise ValueError(f"{name}: a context of batch shape {shape} does not pair with inputs "
                         f"of batch shape {batch_static}; it must broadcast to it.")
    if extra:
        context = tf.reshape(context, tf.shape(context)[extra:])
    return tf.broadcast_to(context, tf.concat([batch, tf.shape(context)[-1:]], 0))


def on_one_batch_axis(call: Callable, x, context, event_rank: int, name: str):
    """`call(x, context)` for `x` of shape (*batch, *event), `call` taking one batch axis.

    `event_rank` is the number of trailing event axes of `x`. With exactly one batch axis
    (the training path) `call` gets its arguments as they come: no op is added. Otherwise
    `x` becomes (prod(batch), *event), the context (if any) is paired with the batch (see
    `_context_per_example`) and flattened likewise, and the output gets `x`'s batch axes back.
    """
    rank = x.shape.rank
    if rank is None or rank < event_rank:
        raise ValueError(f"{name} takes inputs of {event_rank} event axes after any number of "
                         f"batch axes; got shape {x.shape}.")
    batch_rank = rank - event_rank
    if batch_rank == 1:
        return call(x, context)
    batch_static = x.shape[:batch_rank]
    batch = tf.shape(x)[:batch_rank]
    flat = tf.reshape(x, tf.concat([[-1], tf.shape(x)[batch_rank:]], 0))
    flat.set_shape(tf.TensorShape([None]).concatenate(x.shape[batch_rank:]))
    if context is not None:
        context = _context_per_example(context, batch, batch_static, name)
        context = tf.reshape(context, tf.concat([[-1], tf.shape(context)[-1:]], 0))
    out = call(flat, context)
    restored = tf.reshape(out, tf.concat([batch, tf.shape(out)[1:]], 0))
    restored.set_shape(batch_static.concatenate(out.shape[1:]))
    return restored
