"""What each idea for a faster Glow training step buys, measured one at a time.

    python -m benchmarks.glow_ablations            # about 5 minutes on 2 CPU cores

Two Glow sizes, the ones `benchmarks.bench` compares with TFP: 16x16x3 (2 levels x 4 steps,
64 hidden) and 32x32x3 (3 levels x 8 steps, 256 hidden), batch 32, Keras Adam. For each idea
the time it saves is measured, and set against the whole training step (GradientTape + Adam
in one `tf.function`) of the same model:

- `pointwise_conv`: the conditioners' 1x1 convolution as one matmul over the channel axis
  against TF's convolution op (what the library does), same weights: whole training steps,
  the two variants taking turns in one process.
- `stacked_variables`: Adam's update over the model's variables as the library keeps them
  (each level's step parameters stacked, one variable per kind, `GlowSteps`) against the same
  sizes as one variable per kind per step (what the library kept before): the update is
  the part of the step that this changes; reading rows and densifying their gradients is
  in the step time of `benchmarks.bench`.
- `fold_actnorm`: the ActNorm and invertible 1x1 convolution bijectors of one step (inverse,
  log-dets and gradient) against a single folded affine map x @ M^T + b with the log-dets
  added once, times the number of steps at each level.
- `space_to_depth`: our `Squeeze` (reshape, transpose, reshape) against the single
  `tf.nn.space_to_depth` op, forward and gradient, times the squeezes of a step.

Rounds take turns so background load hits both variants alike; medians are reported.
Writes benchmarks/results/<date>-cpu-glow-ablations.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from benchmarks import harness
from tfp_flows import compat
from tfp_flows.bijectors import ActNorm, InvertibleConv1x1, Squeeze, lu_factors
from tfp_flows.nets import ConvNet
from tfp_flows.steps import GlowSteps

SIZES = {"16x16x3": ((16, 16, 3), 2, 4, 64), "32x32x3": ((32, 32, 3), 3, 8, 256)}
BATCH = 32


def _median_ms(fns: dict, calls: int, rounds: int) -> dict:
    """Median ms per call of each function, the functions taking turns round by round."""
    for fn in fns.values():
        np.asarray(fn())
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                out = fn()
            np.asarray(out)
            times[name].append(1e3 * (time.perf_counter() - start) / calls)
    return {name: float(np.median(t)) for name, t in times.items()}


@contextlib.contextmanager
def _matmul_1x1():
    """ConvNet's convolutions with a 1x1 kernel computed as a matmul (same weights, same
    function)."""
    native = ConvNet.linear

    def linear(net, x, kernel):
        if tuple(kernel.shape[:2]) != (1, 1):
            return native(net, x, kernel)
        return keras.ops.tensordot(x, keras.ops.reshape(kernel, kernel.shape[2:]), axes=1)

    ConvNet.linear = linear
    try:
        yield
    finally:
        ConvNet.linear = native


def _glow(size: str):
    shape, levels, depth, hidden = SIZES[size]
    keras.utils.set_random_seed(0)
    model = tfp_flows.glow(shape, num_scales=levels, depth=depth, hidden=hidden, num_levels=256)
    rng = np.random.default_rng(0)
    x = tf.constant((rng.integers(0, 256, (BATCH, *shape)) + rng.random((BATCH, *shape)))
                    .astype("float32"))
    model.initialize_from_data(x.numpy())
    return model, x


def _train_step(model, x):
    """The benchmark's training step (GradientTape + Keras Adam) on the batch `x`."""
    step = harness.train_step_fn(model.log_prob, model.trainable_variables, False, 1e-4)
    return lambda: step(x)


def pointwise_conv(size: str, calls: int, rounds: int) -> dict:
    model, x = _glow(size)
    native = _train_step(model, x)
    native()  # traced with TF's convolution op
    matmul = _train_step(model, x)
    with _matmul_1x1():
        matmul()  # traced with the matmul
    ms = _median_ms({"conv_op": native, "matmul": matmul}, calls, rounds)
    return {"step_ms": ms["conv_op"], "matmul_step_ms": ms["matmul"],
            "saving_ms": ms["conv_op"] - ms["matmul"]}


def _per_step_shapes(model) -> tuple[list, list]:
    """The model's trainable shapes as one variable per kind per step, and as the library
    keeps them (the steps of a level stacked on a leading axis)."""
    stacked = {id(v): v for layer in compat.sublayers(model.flow)
               if isinstance(layer, GlowSteps) for v in layer.trainable_weights}
    others = [tuple(v.shape) for v in model.trainable_variables if id(v) not in stacked]
    per_step = [tuple(v.shape[1:]) for v in stacked.values() for _ in range(v.shape[0])]
    return per_step + others, [tuple(v.shape) for v in stacked.values()] + others


def _adam_update(optimizer, gradients, variables):
    @tf.function
    def update():
        optimizer.apply(gradients, variables)
        return optimizer.iterations

    return update


def stacked_variables(size: str, calls: int, rounds: int) -> dict:
    model, _ = _glow(size)
    rng = np.random.default_rng(0)
    fns, counts = {}, {}
    for name, shapes in zip(("per_step", "stacked"), _per_step_shapes(model), strict=True):
        variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in shapes]
        gradients = [tf.constant(rng.normal(size=s).astype("float32")) for s in shapes]
        optimizer = keras.optimizers.Adam(1e-4)
        optimizer.build(variables)
        fns[name] = _adam_update(optimizer, gradients, variables)
        counts[name] = len(shapes)
    ms = _median_ms(fns, calls, rounds)
    return {"variables": counts, "adam_ms": ms, "saving_ms": ms["per_step"] - ms["stacked"]}


def _actnorm_conv_fns(height: int, channels: int):
    """One step's ActNorm + LU 1x1 conv as bijectors, and folded into one affine map."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(BATCH, height, height, channels)).astype("float32"))
    loc = tf.Variable(rng.normal(size=channels).astype("float32"))
    log_scale = tf.Variable(0.1 * rng.normal(size=channels).astype("float32"))
    q = np.linalg.qr(rng.normal(size=(channels, channels)))[0]
    factors = {k: tf.Variable(v.astype("float32")) for k, v in lu_factors(q).items()}
    variables = [loc, log_scale, factors["lower"], factors["upper"], factors["log_abs_diag"]]
    positions = float(height * height)

    def separate():
        with tf.GradientTape() as tape:
            actnorm, conv = ActNorm(loc, log_scale), InvertibleConv1x1(**factors)
            h = actnorm.inverse(x)
            z = conv.inverse(h)
            log_det = (actnorm.inverse_log_det_jacobian(x, event_ndims=3)
                       + conv.inverse_log_det_jacobian(h, event_ndims=3))
            loss = tf.reduce_sum(z * z) + tf.reduce_sum(log_det)
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, variables)])

    def folded():
        with tf.GradientTape() as tape:
            conv = InvertibleConv1x1(**factors)
            # z = W^-1 ((x - loc) exp(-s)) = x M^T + b with M = W^-1 diag(exp(-s)), b = -M loc
            matrix = conv._inverse_weight(tf.float32) * tf.exp(-log_scale)[None, :]
            z = tf.tensordot(x, matrix, [[-1], [1]]) - tf.linalg.matvec(matrix, loc)
            log_det = -positions * (tf.reduce_sum(log_scale)
                                    + tf.reduce_sum(factors["log_abs_diag"]))
            loss = tf.reduce_sum(z * z) + log_det  # constant Jacobians: TFP's log-dets are scalars
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, variables)])

    separate, folded = tf.function(separate), tf.function(folded)
    if not np.allclose(separate(), folded(), rtol=1e-3):
        raise RuntimeError("the folded ActNorm + 1x1 conv does not match the bijectors")
    return separate, folded


def _levels(size: str) -> list[tuple[int, int]]:
    """(height, channels) after each level's squeeze."""
    (height, _, channels), levels, _, _ = SIZES[size]
    out = []
    for _ in range(levels):
        height, channels = height // 2, channels * 4
        out.append((height, channels))
        channels //= 2
    return out


def fold_actnorm(size: str, calls: int, rounds: int) -> dict:
    depth = SIZES[size][2]
    saving, per_level = 0.0, {}
    for height, channels in _levels(size):
        separate, folded = _actnorm_conv_fns(height, channels)
        ms = _median_ms({"separate": separate, "folded": folded}, calls, rounds)
        per_level[f"{height}x{height}x{channels}"] = ms
        saving += depth * (ms["separate"] - ms["folded"])
    return {"per_step_ms": per_level, "saving_ms": saving}


def space_to_depth(size: str, calls: int, rounds: int) -> dict:
    (height, _, channels), _, _, _ = SIZES[size]
    saving, per_level = 0.0, {}
    for level_height, level_channels in _levels(size):
        # The level squeezes its input, of twice its height and a quarter of its channels.
        shape = (BATCH, 2 * level_height, 2 * level_height, level_channels // 4)
        x = tf.constant(np.random.default_rng(0).normal(size=shape).astype("float32"))

        def timed(squeeze, x=x):
            def run():
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = squeeze(x)
                    loss = tf.reduce_sum(y * y)
                return tape.gradient(loss, x)
            return tf.function(run)

        ours, op = timed(Squeeze().forward), timed(lambda v: tf.nn.space_to_depth(v, 2))
        np.testing.assert_array_equal(Squeeze().forward(x), tf.nn.space_to_depth(x, 2))
        ms = _median_ms({"reshape_transpose": ours, "space_to_depth_op": op}, calls, rounds)
        per_level[f"{shape[1]}x{shape[2]}x{shape[3]}"] = ms
        # Each level squeezes once on the way to the latent and unsqueezes its output once.
        saving += 2 * (ms["reshape_transpose"] - ms["space_to_depth_op"])
    return {"per_squeeze_ms": per_level, "saving_ms": saving}


IDEAS = {"pointwise_conv": pointwise_conv, "stacked_variables": stacked_variables,
         "fold_actnorm": fold_actnorm, "space_to_depth": space_to_depth}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = {}
    for size in SIZES:
        steps_calls = 10 if size == "16x16x3" else 2
        results[size] = {name: idea(size, steps_calls if name == "pointwise_conv" else 50,
                                    args.rounds)
                         for name, idea in IDEAS.items()}
        step_ms = results[size]["pointwise_conv"]["step_ms"]
        for name, row in results[size].items():
            row["share_of_step"] = row["saving_ms"] / step_ms
            print(f"[{size}] {name}: saves {row['saving_ms']:.2f} ms of a {step_ms:.1f} ms "
                  f"training step ({100 * row['share_of_step']:.1f}%)", flush=True)
    date = datetime.date.today().isoformat()
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"{date}-cpu-glow-ablations.json")
    with open(out, "w") as handle:
        json.dump({"date": date, "batch": BATCH, "sizes": {k: {"shape": v[0], "levels": v[1],
                   "depth": v[2], "hidden": v[3]} for k, v in SIZES.items()},
                   "rounds": args.rounds, "results": results}, handle, indent=2)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
