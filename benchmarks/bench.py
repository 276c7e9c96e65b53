"""Side-by-side benchmark of tfp_flows against TFP's built-in Glow, RealNVP and MAF.

Run from the repository root:

    python -m benchmarks.bench                    # default sizes, about 15 minutes on 2 CPU cores
    python -m benchmarks.bench --flows glow --glow-shape 32,32,3 --glow-levels 3 \
        --glow-depth 8 --glow-hidden 256 --fit-runs in_memory,in_memory_tfp --fit-rounds 2
    python -m benchmarks.bench --jit              # every step function with jit_compile=True
    python -m benchmarks.bench --device gpu       # Glow 32x32x3 at the paper's size on a GPU

For each family it builds our model and TFP's at the same architecture (parameter counts are
printed and must agree within 10%), trains both on the same batches in one process with the
same loop, a `tf.function` step of GradientTape + Keras Adam, and reports as ratios ours/TFP:

- training examples/s: median over rounds; the two models (and the cost floors below) take
  turns round by round, so background load on a shared machine hits all of them alike;
- sampling examples/s (a batch of samples drawn in a `tf.function`);
- NLL on held-out data after the same number of steps;
- peak memory of a training step: the peak of TF's allocator statistics
  (`tf.config.experimental.get_memory_info`) over one step, above what was allocated before
  it: activations kept for the backward pass, gradients and temporaries, not the weights. On
  CPU TF keeps these statistics only under its BFC allocator, so the memory columns come from
  a process of their own that runs under it; everything else runs with the default allocator;
- flow overhead: the training step's time over the time of a step of the same conditioner
  networks alone (forward, backward and Adam on their weights, inputs of the shapes they see
  in the flow): the cost floor of any flow built on those networks.

It also times our model through `FlowModel.fit` on the library's own `tf.data` pipeline and the
pipeline alone, to show whether input is ever the bottleneck, and through `fit` with and without
the step guard (the check that refuses a non-finite update), to give the guard's share of a
step, and TFP's model through the same Keras `fit` (epochs of `--fit-steps` steps from memory).
Results go to benchmarks/results/<date>-<device>.json and a markdown table is printed.

`--device gpu` (or `--matrix` on any device) runs something else: our Glow at the paper's
CIFAR-10 size (32x32x3, 3 levels x 32 steps, 512 hidden, batch 64) through `fit` and
`model.sample`, images/s with XLA off and on, in float32 and in mixed precision, to
benchmarks/results/<date>-<device>-matrix.json.

The data are synthetic and generated here, so the benchmark needs no download: images of soft
coloured blobs (uint8, dequantized by `tfp_flows.datasets`) and vectors from a 16-dimensional
Gaussian mixture passed through a fixed nonlinear map.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import functools
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from tensorflow_probability import bijectors as tfb  # noqa: E402
from tensorflow_probability import distributions as tfd  # noqa: E402

import tfp_flows  # noqa: E402
from tfp_flows import datasets  # noqa: E402

FLOWS = ("glow", "realnvp", "maf")
# The fit timings: our FlowModel on the library's tf.data pipeline, on batches from memory,
# from memory without the step guard; TFP's model from memory through Keras fit.
FIT_RUNS = ("pipeline", "in_memory", "in_memory_unguarded", "in_memory_tfp")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@dataclasses.dataclass
class Contender:
    """One side of a comparison: a density with its parameters and conditioner networks.

    Attributes:
        log_prob: x -> log p(x), one value per example.
        variables: the trainable variables the step updates.
        sample: n -> n samples.
        conditioners: (network, input shape without batch) for every conditioner network.
        init: runs data-dependent initialisation (ActNorm) on a batch.
        model: our FlowModel, for the `fit` timings (None for TFP's side).
    """

    log_prob: Callable[[tf.Tensor], tf.Tensor]
    variables: list
    sample: Callable[[int], tf.Tensor]
    conditioners: list[tuple[Callable, tuple[int, ...]]]
    init: Callable[[tf.Tensor], None]
    model: tfp_flows.FlowModel | None = None

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.variables))


# ---------------------------------------------------------------------------------- data

def _blob_images(n: int, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """uint8 images of 1-3 soft blobs of random colour on a random flat background."""
    height, width, channels = shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    images = np.empty((n, height, width, channels), np.float32)
    images[:] = rng.uniform(0, 80, (n, 1, 1, channels))
    for _ in range(3):
        present = rng.uniform(size=(n, 1, 1, 1)) < 0.8
        centre = rng.uniform(0, 1, (n, 2)) * [height, width]
        radius = rng.uniform(0.1, 0.35, (n, 1, 1)) * height
        dist2 = ((rows - centre[:, :1, None]) ** 2 + (cols - centre[:, 1:, None]) ** 2)
        blob = np.exp(-dist2 / (2 * radius ** 2))[..., None]
        images += present * blob * rng.uniform(40, 175, (n, 1, 1, channels))
    return np.clip(images, 0, 255).astype(np.uint8)


def _mixture_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Standardised samples of a Gaussian mixture bent by a fixed smooth map."""
    params = np.random.default_rng(1234)
    means = params.normal(0, 2.0, (8, dim))
    mixing = params.normal(0, 1.0 / np.sqrt(dim), (dim, dim))
    z = means[rng.integers(0, 8, n)] + rng.normal(0, 0.5, (n, dim))
    x = z + np.sin(z @ mixing)
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def make_data(flow: str, cfg: argparse.Namespace, directory: str) -> datasets.Splits:
    """The library's train/validation/test pipelines over synthetic data for `flow`."""
    rng = np.random.default_rng(0)
    num = cfg.examples
    if flow == "glow":
        x = _blob_images(num + cfg.eval_examples, cfg.glow_shape, rng)
        batch = cfg.glow_batch
    else:
        x = _mixture_vectors(num + cfg.eval_examples, cfg.dim, rng)
        batch = cfg.vector_batch
    path = os.path.join(directory, f"{flow}.npz")
    np.savez(path, x_train=x[:num], x_test=x[num:])
    return datasets.load(path, batch_size=batch, seed=0)


# ------------------------------------------------------------------------------ builders

def conditioner_inputs(model) -> list[tuple]:
    """(conditioner, the input shape it was built for) for every network of our flow; each
    copy of a stacked network (the steps of a Glow level) is a conditioner of its own."""
    nets = []
    for net in model.flow.conditioners:
        shape = tuple(net.get_build_config()["input_shape"][1:])
        copies = getattr(net, "copies", None)
        nets += ([(net, shape)] if copies is None else
                 [(functools.partial(net, copy=k), shape) for k in range(copies)])
    return nets


def build_glow(cfg) -> tuple[Contender, Contender]:
    shape, levels, depth, hidden = cfg.glow_shape, cfg.glow_levels, cfg.glow_depth, cfg.glow_hidden
    keras.utils.set_random_seed(0)
    model = tfp_flows.glow(shape, num_scales=levels, depth=depth, hidden=hidden, num_levels=256)
    ours = Contender(model.log_prob, model.trainable_variables,
                     lambda n: model.sample(n, seed=1), conditioner_inputs(model),
                     lambda x: model.initialize_from_data(x.numpy()), model)

    def coupling_net(input_shape):
        return tfb.GlowDefaultNetwork(input_shape, num_hidden=hidden)

    glow = tfb.Glow(output_shape=shape, num_glow_blocks=levels, num_steps_per_block=depth,
                    coupling_bijector_fn=coupling_net,
                    exit_bijector_fn=tfb.GlowDefaultExitNetwork, seed=0)
    # The same pixel scaling as ours (x / 256 - 1/2), so both NLLs are in pixel space.
    bijector = tfb.Chain([tfb.Scale(256.0), tfb.Shift(0.5), glow])
    theirs_dist = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [int(np.prod(shape))]), bijector)
    # TFP's networks are tf_keras models built on an Input of the shape they see.
    theirs_nets = [(net, tuple(net.input_shape[1:])) for net in _tfp_glow_networks(glow)]

    def theirs_init(x):
        # TFP's ActNorm initialises itself from the first batch it sees, in a tf.cond.
        theirs_dist.log_prob(x)

    # TFP's Glow is a tf.Module that tracks the variables of its tf_keras networks itself.
    theirs = Contender(theirs_dist.log_prob, list(glow.trainable_variables),
                       lambda n: theirs_dist.sample(n, seed=1), theirs_nets, theirs_init)
    return ours, theirs


def _tfp_glow_networks(glow: tfb.Glow) -> list:
    """The coupling and exit networks of TFP's Glow (tf_keras models it holds as submodules)."""
    kinds = (tfb.GlowDefaultNetwork, tfb.GlowDefaultExitNetwork)
    return list({id(m): m for m in glow.submodules if isinstance(m, kinds)}.values())


def build_realnvp(cfg) -> tuple[Contender, Contender]:
    dim, couplings, hidden = cfg.dim, cfg.couplings, cfg.vector_hidden
    keras.utils.set_random_seed(0)
    model = tfp_flows.realnvp((dim,), num_couplings=couplings, hidden=hidden, num_hidden=2)
    ours = Contender(model.log_prob, model.trainable_variables,
                     lambda n: model.sample(n, seed=1), conditioner_inputs(model), lambda x: None,
                     model)

    templates, layers = [], []
    for i in range(couplings):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            template = tfb.real_nvp_default_template(hidden_layers=[hidden, hidden],
                                                     name=f"real_nvp_template_{i}")
        templates.append(template)
        layers.append(tfb.RealNVP(num_masked=dim // 2, shift_and_log_scale_fn=template))
        if i < couplings - 1:
            layers.append(tfb.Permute(list(reversed(range(dim)))))
    theirs_dist = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [dim]), tfb.Chain(layers))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_dist.log_prob(tf.zeros([1, dim]))  # creates the templates' variables

    def template_net(template):
        return lambda x: tf.concat(template(x, dim - dim // 2), axis=-1)

    theirs_nets = [(template_net(t), (dim // 2,)) for t in templates]
    variables = [v for t in templates for v in t.trainable_variables]
    theirs = Contender(theirs_dist.log_prob, variables, lambda n: theirs_dist.sample(n, seed=1),
                       theirs_nets, lambda x: None)
    return ours, theirs


def build_maf(cfg) -> tuple[Contender, Contender]:
    dim, num_layers, hidden = cfg.dim, cfg.maf_layers, cfg.vector_hidden
    keras.utils.set_random_seed(0)
    model = tfp_flows.maf((dim,), num_layers=num_layers, hidden=hidden, num_hidden=2)
    ours = Contender(model.log_prob, model.trainable_variables,
                     lambda n: model.sample(n, seed=1), conditioner_inputs(model),
                     lambda x: None, model)
    mades, layers = [], []
    for i in range(num_layers):
        made = tfb.AutoregressiveNetwork(params=2, event_shape=[dim],
                                         hidden_units=[hidden, hidden], activation="relu")
        mades.append(made)
        layers.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made))
        if i < num_layers - 1:
            layers.append(tfb.Permute(list(reversed(range(dim)))))
    theirs_dist = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [dim]), tfb.Chain(layers))
    theirs_dist.log_prob(tf.zeros([1, dim]))
    theirs = Contender(theirs_dist.log_prob, [v for m in mades for v in m.trainable_variables],
                       lambda n: theirs_dist.sample(n, seed=1), [(m, (dim,)) for m in mades],
                       lambda x: None)
    return ours, theirs


BUILDERS = {"glow": build_glow, "realnvp": build_realnvp, "maf": build_maf}


def build(flow: str, cfg, first_batch: tf.Tensor) -> tuple[Contender, Contender]:
    ours, theirs = BUILDERS[flow](cfg)
    for contender in (ours, theirs):
        contender.init(first_batch)
    return ours, theirs


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
        train = list(make_data(flow, cfg, directory).train.take(cfg.warmup))
    sides = dict(zip(("ours", "theirs"), build(flow, cfg, train[0]), strict=True))
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
    pixels = _blob_images(cfg.glow_batch, cfg.glow_shape, rng)
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


class UnguardedFlowModel(tfp_flows.FlowModel):
    """FlowModel without the step guard (every update applied unchecked): the guard's cost."""

    def _step_guard(self, loss, gradients):
        return tf.no_op()


class DensityModel(keras.Model):
    """A log-density and its variables trained by Keras `fit` (TFP's side of the fit timing):
    the mean NLL, GradientTape and the optimizer, with a loss metric as FlowModel keeps."""

    def __init__(self, log_prob, variables):
        super().__init__()
        # Plain attributes: the variables are TFP's tf.Variables, not Keras-tracked weights.
        object.__setattr__(self, "_density", log_prob)
        object.__setattr__(self, "_density_variables", list(variables))
        self._loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    @property
    def metrics(self):
        return [self._loss_tracker]

    def train_step(self, x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self._density(x))
        gradients = tape.gradient(loss, self._density_variables)
        self.optimizer.apply(gradients, self._density_variables)
        self._loss_tracker.update_state(loss)
        return {"loss": self._loss_tracker.result()}


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


def fit_comparison(ours: Contender, theirs: Contender, pipeline: tf.data.Dataset,
                   batches: list[tf.Tensor], cfg) -> dict:
    """Epochs of `cfg.fit_steps` steps through Keras `fit`: our FlowModel reading the
    library's pipeline, reading batches from memory, and from memory without the step guard
    (same flow layer, so the same weights); TFP's model from memory through `DensityModel`."""
    model = ours.model
    unguarded = UnguardedFlowModel(model.flow)
    unguarded.data_initialized.assign(model.data_initialized)
    tfp_model = DensityModel(theirs.log_prob, theirs.variables)
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
        splits = make_data(flow, cfg, directory)
        # Materialised up front: the step comparison times the steps, not the input.
        train = list(splits.train.repeat().take(cfg.warmup + cfg.rounds * cfg.chunk))
        test = list(splits.test)
    ours, theirs = build(flow, cfg, train[0])
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


# ----------------------------------------------------------------- device throughput matrix

def throughput_matrix(cfg) -> dict:
    """Our Glow's images/s through `fit` and `model.sample` for XLA off / on x float32 / mixed.

    One model per cell, built under the cell's Keras dtype policy (mixed: conditioner networks
    in 16-bit floats, variables and log-dets in float32; under mixed_float16 Keras' `compile`
    adds dynamic loss scaling). Training: epochs of `--fit-steps` steps of `fit` from memory,
    after two untimed steps that trace (and compile with XLA). Sampling: `model.sample`
    of a batch inside a `tf.function` with the cell's `jit_compile`. Peak memory: the device
    allocator's peak over the timed epochs, weights included (GPU only: on CPU TF keeps no
    statistics under its default allocator).
    """
    rng = np.random.default_rng(0)
    batch = cfg.glow_batch
    pixels = _blob_images(8 * batch, cfg.glow_shape, rng)
    x = pixels.astype(np.float32) + rng.uniform(size=pixels.shape).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=True).cache()
    rows = {}
    for policy in ("float32", cfg.mixed_policy):
        for jit in (False, True):
            keras.mixed_precision.set_global_policy(policy)
            try:
                row = _throughput(x[:batch], data.repeat(), jit, cfg)
            finally:
                keras.mixed_precision.set_global_policy("float32")
            rows[f"{policy}, XLA {'on' if jit else 'off'}"] = row
            print(f"[matrix] {policy}, XLA {'on' if jit else 'off'}: "
                  f"train {row['train_images_s']:,.0f} images/s, sample "
                  f"{row['sample_images_s']:,.0f} images/s, loss {row['final_loss']:.1f}",
                  flush=True)
    return rows


def _throughput(first_batch: np.ndarray, data: tf.data.Dataset, jit: bool, cfg) -> dict:
    keras.utils.set_random_seed(0)
    model = tfp_flows.glow(cfg.glow_shape, num_scales=cfg.glow_levels, depth=cfg.glow_depth,
                           hidden=cfg.glow_hidden, num_levels=256)
    model.initialize_from_data(first_batch)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), jit_compile=jit)

    def epoch(steps: int) -> tuple[float, float]:
        start = time.perf_counter()
        history = model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        return time.perf_counter() - start, history.history["loss"][-1]

    epoch(2)
    gpu = bool(tf.config.list_logical_devices("GPU"))
    if gpu:
        tf.config.experimental.reset_memory_stats("GPU:0")
    times, losses = zip(*(epoch(cfg.fit_steps) for _ in range(cfg.fit_rounds)), strict=True)
    peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20 if gpu else None
    sample = tf.function(lambda: model.sample(cfg.glow_batch, seed=1), jit_compile=jit)
    samples = sample().numpy()
    sample_times = []
    for _ in range(5):
        start = time.perf_counter()
        sample().numpy()
        sample_times.append(time.perf_counter() - start)
    return {"train_images_s": cfg.fit_steps * cfg.glow_batch / float(np.median(times)),
            "sample_images_s": cfg.glow_batch / float(np.median(sample_times)),
            "peak_mib": peak, "final_loss": float(losses[-1]),
            "finite_samples": float(np.isfinite(samples).all(axis=(1, 2, 3)).mean())}


def matrix_table(rows: dict, cfg, info: dict, date: str) -> str:
    device = ", ".join(info["gpus"]) or f"CPU {info['cpu']}, {info['cores']} cores"
    lines = [f"Machine: {device}; TF {info['tensorflow']}, Keras {info['keras']}. Date: {date}. "
             f"Glow {_size('glow', cfg)}, Adam {cfg.learning_rate}, epochs of {cfg.fit_steps} "
             f"steps.", "",
             "| policy, XLA | train images/s (fit) | sample images/s | peak MiB | loss |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        peak = "–" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
        lines.append(f"| {name} | {r['train_images_s']:,.0f} | {r['sample_images_s']:,.0f} | "
                     f"{peak} | {r['final_loss']:.1f} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- report

def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "tensorflow_probability": tfp.__version__,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def _size(flow: str, cfg) -> str:
    if flow == "glow":
        h, w, c = cfg.glow_shape
        return (f"{h}x{w}x{c}, L={cfg.glow_levels} K={cfg.glow_depth} "
                f"hidden={cfg.glow_hidden}, batch {cfg.glow_batch}")
    layers = cfg.couplings if flow == "realnvp" else cfg.maf_layers
    return (f"D={cfg.dim}, {layers} layers, 2x{cfg.vector_hidden}, "
            f"batch {cfg.vector_batch}")


def table(results: dict, cfg, info: dict, date: str) -> str:
    def pair(r, name, fmt):
        if name + "_ratio" not in r:
            return "–"
        return (f"{fmt.format(r[name + '_ours'])} / {fmt.format(r[name + '_theirs'])} "
                f"(**{r[name + '_ratio']:.2f}x**)")

    def cell(r, name, fmt):
        return fmt.format(r[name]) if name in r else "–"

    device = ", ".join(info["gpus"]) or f"CPU {info['cpu']}, {info['cores']} cores"
    lines = [
        f"Machine: {device}; TF {info['tensorflow']}, Keras {info['keras']}, "
        f"TFP {info['tensorflow_probability']}. Date: {date}. "
        f"jit_compile={cfg.jit}.",
        "",
        "Each cell: ours / TFP (ratio ours/TFP).",
        "",
        "| flow | size | params | train ex/s | sample ex/s | NLL nats (test) | "
        "step peak MiB | flow overhead | ours fit ex/s: tf.data / memory | tf.data alone ex/s "
        "| step guard cost | fit ex/s from memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for flow, r in results.items():
        params = f"{r['params']['ours']:,} / {r['params']['theirs']:,}"
        nll = pair(r, "nll", "{:.2f}")
        if "bpd_ours" in r:
            nll += f"; bpd {r['bpd_ours']:.3f} / {r['bpd_theirs']:.3f}"
        lines.append(
            f"| {flow} | {_size(flow, cfg)} | {params} | {pair(r, 'train_ex_s', '{:.0f}')} | "
            f"{pair(r, 'sample_ex_s', '{:.0f}')} | {nll} | {pair(r, 'step_mem_mib', '{:.1f}')} "
            f"| {pair(r, 'overhead', '{:.2f}')} | {cell(r, 'fit_ex_s_ours', '{:.0f}')} / "
            f"{cell(r, 'fit_in_memory_ex_s_ours', '{:.0f}')} | {r['pipeline_ex_s']:.0f} "
            f"| {cell(r, 'step_guard_cost', '{:.1%}')} "
            f"| {pair(r, 'fit_in_memory_ex_s', '{:.0f}')} |")
    return "\n".join(lines)


# Glow sizes: the CPU comparison's matched size, and the Glow paper's CIFAR-10 model on a GPU.
GLOW_DEFAULTS = {
    "cpu": {"shape": (16, 16, 3), "levels": 2, "depth": 4, "hidden": 64, "batch": 32},
    "gpu": {"shape": (32, 32, 3), "levels": 3, "depth": 32, "hidden": 512, "batch": 64},
}


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.split(","))


def _depths(text: str) -> tuple[int, ...]:
    depths = _shape(text) if text else ()
    if len(depths) not in (0, 2):
        raise argparse.ArgumentTypeError(f"expected two depths or '', got {text!r}")
    return depths


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", default=",".join(FLOWS),
                        help="comma-separated subset of glow,realnvp,maf")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="cpu: ours against TFP; gpu: our Glow's throughput matrix (XLA "
                             "off/on x float32/mixed precision) at the paper's CIFAR-10 size")
    parser.add_argument("--matrix", action="store_true",
                        help="run the throughput matrix on this machine's device")
    parser.add_argument("--mixed-policy", default=None,
                        help="the matrix's mixed precision policy (default: mixed_float16 on "
                             "a GPU, mixed_bfloat16 on CPU)")
    for flag, kind in (("shape", _shape), ("levels", int), ("depth", int), ("hidden", int),
                       ("batch", int)):
        parser.add_argument(f"--glow-{flag}", type=kind, default=None,
                            help=f"default {GLOW_DEFAULTS['cpu'][flag]} (cpu), "
                                 f"{GLOW_DEFAULTS['gpu'][flag]} (gpu)")
    parser.add_argument("--dim", type=int, default=16, help="vector flows: data dimension")
    parser.add_argument("--couplings", type=int, default=6, help="RealNVP couplings")
    parser.add_argument("--maf-layers", type=int, default=5)
    parser.add_argument("--vector-hidden", type=int, default=256)
    parser.add_argument("--vector-batch", type=int, default=256)
    parser.add_argument("--examples", type=int, default=4096, help="training examples")
    parser.add_argument("--eval-examples", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=3,
                        help="steps before timing: one traces, the others measure memory")
    parser.add_argument("--rounds", type=int, default=8, help="timed rounds per model")
    parser.add_argument("--chunk", type=int, default=8, help="steps per timed round")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--jit", action="store_true", help="jit_compile=True for every step")
    parser.add_argument("--fit-steps", type=int, default=150,
                        help="steps per epoch of the fit timings")
    parser.add_argument("--fit-rounds", type=int, default=5,
                        help="timed fit epochs per model, after one that traces")
    parser.add_argument("--fit-runs", default=",".join(FIT_RUNS),
                        help=f"which fit timings to take, a subset of {','.join(FIT_RUNS)}")
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="for the fit timings (Keras' default is 1)")
    parser.add_argument("--reversible-depths", type=_depths, default=(8, 32),
                        help="two Glow depths for the reversible-gradient memory check "
                             "('' skips it)")
    parser.add_argument("--out", default=None, help="results JSON path")
    cfg = parser.parse_args(argv)
    cfg.flows = [f for f in cfg.flows.split(",") if f]
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.device == "gpu" and not gpus:
        parser.error("--device gpu needs a GPU, and TensorFlow sees none on this machine.")
    cfg.matrix = cfg.matrix or cfg.device == "gpu"
    for flag, value in GLOW_DEFAULTS[cfg.device].items():
        if getattr(cfg, f"glow_{flag}") is None:
            setattr(cfg, f"glow_{flag}", value)
    if cfg.mixed_policy is None:
        cfg.mixed_policy = "mixed_float16" if gpus else "mixed_bfloat16"
    unknown = set(cfg.flows) - set(FLOWS)
    if unknown:
        parser.error(f"unknown flows {sorted(unknown)}; choose from {FLOWS}")
    cfg.fit_runs = [r for r in cfg.fit_runs.split(",") if r]
    if set(cfg.fit_runs) - set(FIT_RUNS):
        parser.error(f"unknown fit runs {sorted(set(cfg.fit_runs) - set(FIT_RUNS))}; choose "
                     f"from {FIT_RUNS}")
    if cfg.warmup < 2 or min(cfg.rounds, cfg.chunk, cfg.fit_steps, cfg.fit_rounds) < 1:
        parser.error("need --warmup >= 2 (the first step traces, the others measure memory) "
                     "and --rounds, --chunk, --fit-steps, --fit-rounds >= 1")
    return cfg


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    # TFP's RealNVP template is TF1 code (tf1 layers) and says so on every trace.
    warnings.filterwarnings("ignore", category=UserWarning, module="tensorflow_probability")
    warnings.filterwarnings("ignore", category=UserWarning, module="tf_keras")
    tf.get_logger().setLevel("ERROR")
    info = machine()
    date = datetime.date.today().isoformat()
    device = "gpu" if info["gpus"] else "cpu"
    if cfg.matrix:
        rows = throughput_matrix(cfg)
        report = matrix_table(rows, cfg, info, date)
        print()
        print(report)
        return _write(cfg.out or os.path.join(RESULTS_DIR, f"{date}-{device}-matrix.json"),
                      {"date": date, "machine": info, "config": _config(cfg), "results": rows,
                       "table": report})
    results = {}
    for flow in cfg.flows:
        start = time.perf_counter()
        results[flow] = compare(flow, cfg)
        print(f"[{flow}] done in {time.perf_counter() - start:.0f} s", flush=True)
    report = table(results, cfg, info, date)
    if "glow" in cfg.flows and cfg.reversible_depths:
        results["reversible_memory"] = in_bfc_process(reversible_memory, cfg)
        memory = results["reversible_memory"]
        report += "\n\n| Glow step peak MiB | " + " | ".join(
            f"depth {d}" for d in cfg.reversible_depths) + " | deep / shallow |\n|---|---|---|---|"
        for kind in ("plain", "reversible"):
            report += (f"\n| {kind} | " + " | ".join(
                f"{memory['peak_mib'][f'{kind}_depth{d}']:.1f}" for d in cfg.reversible_depths)
                + f" | {memory['deep_over_shallow'][kind]:.2f}x |")
    print()
    print(report)
    out = cfg.out or os.path.join(RESULTS_DIR, f"{date}-{device}{'-jit' if cfg.jit else ''}.json")
    return _write(out, {"date": date, "machine": info, "config": _config(cfg),
                        "results": results, "table": report})


def _config(cfg) -> dict:
    return {k: v for k, v in vars(cfg).items() if k != "out"}


def _write(out: str, report: dict) -> dict:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(report, handle, indent=2, default=float)
    print(f"\nwrote {out}")
    return report["results"]


if __name__ == "__main__":
    main()
