"""Conditioners take any leading batch shape: none (one event), one axis, or several."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.nets import MADE, MLP, ConvNet

CONTEXT = 3


def _net(kind: str, conditional: bool):
    context_size = CONTEXT if conditional else 0
    if kind == "mlp":
        return MLP(4, (8,), context_size=context_size), (2,), {}
    if kind == "stacked_mlp":
        return MLP(4, (8,), context_size=context_size, copies=2), (2,), {"copy": 1}
    if kind == "conv":
        return ConvNet(4, 8, context_size=context_size), (4, 4, 2), {}
    return MADE(2, (8,), context_size=context_size), (2,), {}


def _built(kind: str, conditional: bool):
    """A net whose weights (the zero-initialised output layer included) are random."""
    net, event, kwargs = _net(kind, conditional)
    context = tf.zeros([1, CONTEXT]) if conditional else None
    call_args = (context,) if conditional else ()
    net(tf.zeros([1, *event]), *call_args, **kwargs)
    rng = np.random.default_rng(0)
    for weight in net.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    return net, event, kwargs


def _call(net, x, context, kwargs):
    return net(x, context, **kwargs) if context is not None else net(x, **kwargs)


KINDS = ["mlp", "stacked_mlp", "conv", "made"]


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "context"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)], ids=["event", "n", "a_b"])
def test_any_batch_shape_gives_the_rows_of_the_flat_batch(kind, conditional, batch):
    net, event, kwargs = _built(kind, conditional)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(*batch, *event)).astype("float32")
    # One context per position of the last batch axis, or one for all when there is none.
    contexts = rng.normal(size=(batch[-1] if batch else 1, CONTEXT)).astype("float32")
    context = tf.constant(contexts) if conditional else None

    out = _call(net, tf.constant(x), context, kwargs).numpy()

    flat_x = x.reshape(-1, *event)
    flat_context = None
    if conditional:
        flat_context = tf.constant(np.broadcast_to(contexts, (*batch, CONTEXT)).reshape(-1, CONTEXT)
                                   if batch else contexts)
    expected = _call(net, tf.constant(flat_x), flat_context, kwargs).numpy()
    assert out.shape == (*batch, *expected.shape[1:])
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)
    assert np.any(expected != 0)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_shapes_work_in_graphs_with_unknown_sizes(kind):
    net, event, kwargs = _built(kind, True)
    call = tf.function(lambda x, c: _call(net, x, c, kwargs), input_signature=[
        tf.TensorSpec([None, None, *event]), tf.TensorSpec([None, CONTEXT])])
    out = call(tf.zeros([2, 3, *event]), tf.zeros([3, CONTEXT]))
    assert out.shape[:2] == (2, 3)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("batch", "contexts"), [((), 3), ((2, 3), 2), ((3,), 2)])
def test_a_context_that_does_not_pair_with_the_batch_is_refused(kind, batch, contexts):
    net, event, kwargs = _built(kind, True)
    x = tf.zeros([*batch, *event])
    if len(batch) == 1:
        # The training path (one batch axis) is left to broadcasting, which refuses too.
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
            _call(net, x, tf.zeros([contexts, CONTEXT]), kwargs)
        return
    with pytest.raises(ValueError, match="does not pair with inputs of batch shape"):
        _call(net, x, tf.zeros([contexts, CONTEXT]), kwargs)


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_an_empty_batch_of_any_rank_gives_an_empty_output(kind):
    net, event, kwargs = _built(kind, False)
    assert _call(net, tf.zeros([2, 0, *event]), None, kwargs).shape[:2] == (2, 0)


def test_inputs_without_the_event_axes_are_refused():
    net, _, _ = _built("conv", False)
    with pytest.raises(ValueError, match="3 event axes"):
        net(tf.zeros([4, 2]))
