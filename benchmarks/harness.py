"""The benchmark's measurements: training steps, cost floors, sampling, memory, fit epochs.

`compare(flow, cfg)` trains ours and TFP's `flow` (benchmarks/contenders.py) side by side on the
same batches in one process, with the same loop: a `tf.function` step of GradientTape + Keras
Adam. The two sides (and their cost floors) take turns round by round, so background load on a
shared machine hits all of them alike; speed ratios are medians of per-round ratios. The
memory columns come from a process of its own under TF's BFC allocator (`in_bfc_process`).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import tfp_flows
from benchmarks import contenders, synthetic

# The fit timings: our FlowModel on the library's tf.data pipeline, on batches from memory,
# from memory without the step guard; TFP's model from memory through Keras fit.
FIT_RUNS = ("pipeline", "in_memory", "in_memory_unguarded", "in_memory_tfp")


# ------------------------------------------------------------------------------- steps

def train_step_fn(log_prob, variables, jit: bool, learning_rate: float):
    """The compiled training step shared by both sides: NLL, GradientTape, Keras Adam."""
    optimizer = keras.optimizers.Adam(learning_rate)
    # Building the slots eagerly keeps variable creation out of the trace (one trace, not two).
    optimizer.build(variables)

    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(log_prob(x))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


def floor_step_fn(conditioners, batch: int, jit: bool):
    """A training step of the conditioner networks alone, on inputs of the shapes they see.

    The networks run one after the other, each input depending on the previous output, as in
    a flow: independent networks would run concurrently and contend for the cores, which
    made this floor slower than the whole flow on 2 cores. The networks are the flow's own,
    so Adam runs with a zero learning rate: the same work as a real update, and the flow's
    weights stay as its training left them.
    """
    rng = np.random.default_rng(0)
    inputs = [tf.constant(rng.normal(size=(batch, *shape)).astype(np.float32))
              for _, shape in conditioners]
    nets = [net for net, _ in conditioners]
    with tf.GradientTape() as tape:  # one eager call finds the variables the networks read
        for net, x in zip(nets, inputs, strict=True):
            net(x)
    variables = list({id(v): v for v in tape.watched_variables()}.values())
    optimizer = keras.optimizers.Adam(0.0)
    optimizer.build(variables)
    # A zero that grappler cannot fold away: it carries the dependency, not a value.
    link = tf.Variable(0.0, trainable=False)

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            # In a flow the gradient also flows through each network's input.
            tape.watch(inputs)
            loss, carry = 0.0, 0.0
            for net, x in zip(nets, inputs, strict=True):
                out = tf.reduce_mean(net(x + link * carry))
                loss, carry = loss + out, out
        gradients = tape.gradient(loss, [*variables, *inputs])
        if any(g is None for g in gradients):
            raise RuntimeError("the cost floor must differentiate every network weight and input")
        optimizer.apply(gradients[:len(variables)], variables)
        return loss + tf.add_n([tf.reduce_sum(g) for g in gradients[len(variables):]])

    return step


def sample_fn(sample, n: int, jit: bool):
    return tf.function(lambda: sample(n), jit_compile=jit)


def evaluate_nll(log_prob, batches: list[tf.Tensor], jit: bool) -> float:
    fn = tf.function(lambda x: -tf.reduce_mean(log_prob(x)), jit_compile=jit)
    return float(np.mean([fn(x).numpy() for x in batches]))


# -------------------------------------------------------------------------------- memory

def in_bfc_process(fn, *args):
    """`fn(*args)` in a fresh process whose CPU allocator keeps statistics.

    TF keeps allocator statistics on CPU only for its BFC allocator
    (`TF_CPU_ALLOCATOR_USE_BFC`, read when TF starts), which is not the allocator users run
    with: the timings run under TF's default allocator, and the memory columns come from a
    process of their own. A GPU's allocator keeps statistics anyway, and a second process
    would find the GPU's memory taken by this one: there `fn` runs here.
    """
    if tf.config.list_logical_devices("GPU"):
        return fn(*args)
    saved = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC")
    os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"  # the spawned process inherits it
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(fn, args)
    finally:
        if saved is None:
            del os.environ["TF_CPU_ALLOCATOR_USE_BFC"]
        else:
            os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = saved


def step_memory(flow: str, cfg) -> dict:
    """Peak MiB of a training step of ours and of TFP's `flow` (see `step_peak_mib`)."""
    with tempfile.TemporaryDirectory() as directory:
        train = list(synthetic.make_data(flow, cfg, directory).train.take(cfg.warmup))
    sides = dict(zip(("ours", "theirs"), contenders.build(flow, cfg, train[0]), strict=True))
    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    peaks = {}
    for key, side in sides.items():
        step = train_step_fn(side.log_prob, side.variables, cfg.jit, cfg.learning_rate)
        step(train[0]).numpy()  # the trace allocates too; measure the steady state
        # The peak depends a little on the order the executor runs ops in; keep the worst.
        peaks[key] = max(step_peak_mib(step, x, device) for x in train[1:])
    return peaks


def step_peak_mib(step, x: tf.Tensor, device: str) -> float:
    """Peak bytes a training step allocates above what is live before it, from TF's allocator.

    TF keeps statistics of its CPU (and GPU) allocator: every tensor a step allocates, the
    activations kept for the backward pass included, is counted until it is freed.
    """
    tf.config.experimental.reset_memory_stats(device)
    before = tf.config.experimental.get_memory_info(device)["current"]
    step(x).numpy()
    return (tf.config.experimental.get_memory_info(device)["peak"] - before) / 2**20


def reversible_memory(cfg) -> dict:
    """Peak step memory of our Glow at two depths, with ordinary and reversible gradients.

    Issue 5's target: with `reversible=True` the deep model's peak stays within 1.5x of the
    shallow one's, because the backward pass rebuilds activations instead of storing them.
    """
    rng = np.random.default_rng(0)
    pixels = synthetic.blob_images(cfg.glow_batch, cfg.glow_shape, rng)
    x = tf.constant(pixels.astype(np.float32) + rng.uniform(size=pixels.shape).astype(np.float32))
    device = "GPU:0" if tf.config.list_logical_devices("GPU") else "CPU:0"
    peaks = {}
    for reversible in (False, True):
        for depth in cfg.reversible_depths:
            keras.utils.set_random_seed(0)
            model = tfp_flows.glow(cfg.glow_shape, num_scales=cfg.glow_levels, depth=depth,
                                   hidden=cfg.glow_hidden, num_levels=256, reversible=reversible)
            step = train_step_fn(model.log_prob, model.trainable_variables, cfg.jit, 1e-4)
            step(x).numpy()  # the trace allocates too; measure the steady state
            peaks[f"{'reversible' if reversible else 'plain'}_depth{depth}"] = max(
                step_peak_mib(step, x, device) for _ in range(2))
    shallow, deep = cfg.reversible_depths
    ratios = {kind: peaks[f"{kind}_depth{deep}"] / peaks[f"{kind}_depth{shallow}"]
              for kind in ("plain", "reversible")}
    return {"peak_mib": peaks, "deep_over_shallow": ratios}


# ------------------------------------------------------------------------------- compare

def pipeline_rate(dataset: tf.data.Dataset, batches: int, batch: int) -> float:
    iterator = iter(dataset.repeat())
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def fit_times(runs: dict, steps: int, rounds: int) -> dict:
    """Seconds per epoch of `steps` steps of `fit`, per round, for each compiled model and
    dataset of `runs` (name -> (model, dataset)); the runs take turns round by round, after
    a first round of two steps each that traces."""
    epoch_times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append(time.perf_counter() - self.start)

    times = collections.defaultdict(list)
    for round_ in range(rounds + 1):
        for name, (model, dataset) in runs.items():
            model.fit(dataset, epochs=1, steps_per_epoch=steps if round_ else 2, shuffle=False,
                      verbose=0, callbacks=[Timer()])
            if round_ > 0:  # the first round traces
                times[name].append(epoch_times[-1])
    return {name: np.array(t) for name, t in times.items()}


def fit_comparison(ours: contenders.Contender, theirs: contenders.Contender,
                   pipeline: tf.data.Dataset, batches: list[tf.Tensor], cfg) -> dict:
    """Epochs of `cfg.fit_steps` steps through Keras `fit`: our FlowModel reading the
    library's pipeline, reading batches from memory, and from memory without the step guard
    (same flow layer, so the same weights); TFP's model from memory through `DensityModel`."""
    model = ours.model
    unguarded = contenders.UnguardedFlowModel(model.flow)
    unguarded.data_initialized.assign(model.data_initialized)
    tfp_model = contenders.DensityModel(theirs.log_prob, theirs.variables)
    for m in (model, unguarded, tfp_model):
        m.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), jit_compile=cfg.jit,
                  steps_per_execution=cfg.steps_per_execution)
    tfp_model.optimizer.build(theirs.variables)
    # Full batches of a static size: TFP's Glow fails to reshape a batch of unknown size.
    in_memory = tf.data.Dataset.from_tensor_slices(tf.concat(batches, 0)).batch(
        int(batches[0].shape[0]), drop_remainder=True).cache().repeat()
    # Nothing to tune in batches already in memory. With tf.data's autotuning on, whole epochs
    # of either side's fit ran at one of two speeds on 2 cores, by chance per epoch; off,
    # every epoch ran at the fast one.
    options = tf.data.Options()
    options.autotune.enabled = False
    in_memory = in_memory.with_options(options)
    runs = {"pipeline": (model, pipeline.repeat()), "in_memory": (model, in_memory),
            "in_memory_unguarded": (unguarded, in_memory), "in_memory_tfp": (tfp_model, in_memory)}
    return fit_times({name: runs[name] for name in cfg.fit_runs}, cfg.fit_steps, cfg.fit_rounds)


def compare(flow: str, cfg) -> dict:
    """Trains ours and TFP's `flow` side by side on the same batches; returns the numbers."""
    batch = cfg.glow_batch if flow == "glow" else cfg.vector_batch
    with tempfile.TemporaryDirectory() as directory:
        splits = synthetic.make_data(flow, cfg, directory)
        # Materialised up front: the step comparison times the steps, not the input.
        train = list(splits.train.repeat().take(cfg.warmup + cfg.rounds * cfg.chunk))
        test = list(splits.test)
    ours, theirs = contenders.build(flow, cfg, train[0])
    sides = {"ours": ours, "theirs": theirs}
    result = {"batch": batch, "steps": len(train),
              "params": {key: side.num_params for key, side in sides.items()}}
    print(f"[{flow}] parameters: ours {ours.num_params:,}  TFP {theirs.num_params:,}", flush=True)
    if abs(ours.num_params / theirs.num_params - 1) > 0.10:
        raise RuntimeError(f"{flow}: parameter counts differ by more than 10%: {result['params']}")

    steps = {k: train_step_fn(c.log_prob, c.variables, cfg.jit, cfg.learning_rate)
             for k, c in sides.items()}
    floors = {k: floor_step_fn(c.conditioners, batch, cfg.jit) for k, c in sides.items()}
    samplers = {k: sample_fn(c.sample, batch, cfg.jit) for k, c in sides.items()}
    for key in sides:
        start = time.perf_counter()
        steps[key](train[0]).numpy()
        result[f"first_step_s_{key}"] = time.perf_counter() - start
        floors[key]().numpy()
        samplers[key]().numpy()
    for x in train[1:cfg.warmup]:
        for key in sides:
            steps[key](x).numpy()
            floors[key]().numpy()
    for key, peak in in_bfc_process(step_memory, flow, cfg).items():
        result[f"step_mem_mib_{key}"] = peak

    times = collections.defaultdict(list)
    for round_ in range(cfg.rounds):
        chunk = train[cfg.warmup + round_ * cfg.chunk:][:cfg.chunk]
        for key in sides:
            for kind, run in (("step", steps[key]), ("floor", floors[key])):
                start, cpu_start = time.perf_counter(), time.process_time()
                for x in chunk:
                    loss = run(x) if kind == "step" else run()
                loss.numpy()
                times[f"{kind}_{key}"].append((time.perf_counter() - start) / len(chunk))
                times[f"{kind}_cpu_{key}"].append((time.process_time() - cpu_start) / len(chunk))
            for _ in range(3):
                start = time.perf_counter()
                samplers[key]().numpy()
                times[f"sample_{key}"].append(time.perf_counter() - start)

    for key in sides:
        step_s, floor_s = (np.array(times[f"{k}_{key}"]) for k in ("step", "floor"))
        result[f"train_ex_s_{key}"] = batch / float(np.median(step_s))
        result[f"train_cpu_ms_{key}"] = 1e3 * float(np.median(times[f"step_cpu_{key}"]))
        result[f"floor_ex_s_{key}"] = batch / float(np.median(floor_s))
        result[f"overhead_{key}"] = float(np.median(step_s / floor_s))
        result[f"sample_ex_s_{key}"] = batch / float(np.median(times[f"sample_{key}"]))
        result[f"nll_{key}"] = evaluate_nll(sides[key].log_prob, test, cfg.jit)
        if flow == "glow":  # bits/dim in 8-bit space: the NLL is that of dequantized pixels
            result[f"bpd_{key}"] = result[f"nll_{key}"] / (int(np.prod(cfg.glow_shape))
                                                           * np.log(2.0))
    # Speed ratios are medians of per-round ratios: the two sides ran seconds apart, so a
    # burst of load from other processes mostly cancels out.
    def per_round(kind):
        return np.array(times[f"{kind}_theirs"]) / np.array(times[f"{kind}_ours"])

    result["train_ex_s_ratio"] = float(np.median(per_round("step")))
    # CPU seconds of this process per step: the work a step costs, whatever else runs.
    result["train_cpu_ratio"] = float(np.median(per_round("step_cpu")))
    result["overhead_cpu_ours"] = float(np.median(
        np.array(times["step_cpu_ours"]) / np.array(times["floor_cpu_ours"])))
    result["overhead_cpu_theirs"] = float(np.median(
        np.array(times["step_cpu_theirs"]) / np.array(times["floor_cpu_theirs"])))
    result["sample_ex_s_ratio"] = float(np.median(per_round("sample")))
    result["overhead_ratio"] = float(np.median(per_round("floor") / per_round("step")))
    for name in ("nll", "step_mem_mib"):
        result[f"{name}_ratio"] = result[f"{name}_ours"] / result[f"{name}_theirs"]

    result["pipeline_ex_s"] = pipeline_rate(splits.train, 4 * cfg.chunk, batch)
    times = fit_comparison(ours, theirs, splits.train, train, cfg)
    fit = {name: cfg.fit_steps * batch / float(np.median(t)) for name, t in times.items()}
    names = {"pipeline": "fit_ex_s_ours", "in_memory": "fit_in_memory_ex_s_ours",
             "in_memory_unguarded": "fit_unguarded_ex_s_ours",
             "in_memory_tfp": "fit_in_memory_ex_s_theirs"}
    result.update({names[run]: rate for run, rate in fit.items()})
    # Per-round ratios, as for the steps above: neighbouring epochs share the background load.
    if {"in_memory", "in_memory_tfp"} <= set(times):
        by_round = times["in_memory_tfp"] / times["in_memory"]
        result["fit_in_memory_ex_s_ratio"] = float(np.median(by_round))
        result["fit_in_memory_ex_s_ratio_by_round"] = by_round.tolist()
        print(f"[{flow}] through fit ours / TFP {result['fit_in_memory_ex_s_ratio']:.2f}x "
              f"({fit['in_memory']:,.0f} / {fit['in_memory_tfp']:,.0f} ex/s)", flush=True)
    if {"in_memory", "in_memory_unguarded"} <= set(times):
        # The share of a step's time that the step guard takes (same batches, same weights).
        guarded = times["in_memory"] / times["in_memory_unguarded"]
        result["step_guard_cost"] = float(np.median(guarded)) - 1.0
        result["step_guard_cost_by_round"] = (guarded - 1.0).tolist()
        print(f"[{flow}] the step guard costs {100 * result['step_guard_cost']:.1f}% of a step",
              flush=True)
    if "pipeline" in times:
        result["pipeline_headroom"] = result["pipeline_ex_s"] / result["fit_ex_s_ours"]
        print(f"[{flow}] tf.data pipeline alone {result['pipeline_ex_s']:,.0f} ex/s, "
              f"{result['pipeline_headroom']:.0f}x what fit reads from it "
              f"({fit['pipeline']:,.0f} ex/s)", flush=True)
    return result
