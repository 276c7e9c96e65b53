"""The toy comparison table of experiments/toy_2d.py: every family on the same 2-D data.

Each model sees exactly the same batches (one stream of shuffled training points, fixed by the
seed), with the same optimizer, learning-rate schedule and number of steps, and is scored by
its exact test NLL (nats per point) beside the data's entropy, the lowest NLL any model can
reach. Our families are trained with `FlowModel.fit`; TFP's built-in `tfb.RealNVP` and
`tfb.MaskedAutoregressiveFlow` with a hand-written `tf.GradientTape` loop.

Sizes: NSF runs with its defaults (that is what the table tests); every other family, ours and
TFP's, gets the same toy-sized budget as NSF's defaults: 6 couplings / layers / steps with
conditioners of 2 hidden layers of 128 ReLUs (the families' own defaults are sized for images
and would be 10-100x slower here).

Run through `python experiments/toy_2d.py`; `import toy_2d_table` works because Python puts
the script's folder on the path.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow_probability import bijectors as tfb
from tensorflow_probability import distributions as tfd

import tfp_flows
from tfp_flows import datasets

TOYS = ("two_moons", "eight_gaussians")
# The issue's eight Gaussians (radius 2, std 0.1), sharper than tfp_flows.datasets' toy.
ISSUE_TOY = "eight_gaussians_r2_std0.1"
ISSUE_RADIUS, ISSUE_STD = 2.0, 0.1
TRAIN_POINTS = 20_000
TEST_POINTS = 5_000
EPOCHS = 15
BATCH_SIZE = 256
# Adam, cosine-decayed to 0 over the run. At 2e-3 TFP's MAF (unbounded exp scale) diverged on
# two moons (NaN at step 175), so every model runs at 1e-3.
LEARNING_RATE = 1e-3
DEPTH = 6  # couplings / autoregressive layers / Glow steps of every model but NSF
HIDDEN = 128  # units of each of the 2 hidden layers of every conditioner but NSF's
EVAL_BATCH = 1000

# name -> (label, builder of an untrained model); NSF with its defaults.
OURS = {
    "nice": ("NICE", lambda: tfp_flows.nice((2,), num_couplings=DEPTH, hidden=HIDDEN,
                                            num_hidden=2)),
    "realnvp": ("RealNVP", lambda: tfp_flows.realnvp((2,), num_couplings=DEPTH, hidden=HIDDEN)),
    "glow": ("Glow", lambda: tfp_flows.glow((2,), depth=DEPTH, hidden=HIDDEN)),
    "maf": ("MAF", lambda: tfp_flows.maf((2,), num_layers=DEPTH, hidden=HIDDEN)),
    "iaf": ("IAF", lambda: tfp_flows.iaf((2,), num_layers=DEPTH, hidden=HIDDEN)),
    "nsf": ("NSF (ours, defaults)", lambda: tfp_flows.nsf((2,))),
}
TFP_BASELINES = {
    "tfp_realnvp": "TFP tfb.RealNVP",
    "tfp_maf": "TFP tfb.MaskedAutoregressiveFlow",
}
MODELS = (*OURS, *TFP_BASELINES)


def issue_eight_gaussians(n: int, seed: int) -> np.ndarray:
    """Eight Gaussians of std ISSUE_STD centred on a circle of radius ISSUE_RADIUS."""
    rng = np.random.default_rng([seed, 8])
    angle = rng.integers(0, 8, n) * (np.pi / 4.0)
    centers = ISSUE_RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return (centers + ISSUE_STD * rng.standard_normal((n, 2))).astype(np.float32)


def load(name: str, seed: int, train_points: int = TRAIN_POINTS) -> dict[str, np.ndarray]:
    """`train_points` training and TEST_POINTS test points of a toy of tfp_flows.datasets
    (sampled together, 80% / 20%, then the training part cut to `train_points`), or of
    ISSUE_TOY."""
    if name == ISSUE_TOY:
        x = issue_eight_gaussians(TRAIN_POINTS + TEST_POINTS, seed)
        return {"x_train": x[:train_points], "x_test": x[TRAIN_POINTS:]}
    arrays = datasets.load_arrays(name, seed=seed, num_examples=TRAIN_POINTS + TEST_POINTS)
    if (len(arrays["x_train"]), len(arrays["x_test"])) != (TRAIN_POINTS, TEST_POINTS):
        raise RuntimeError(f"unexpected split sizes {len(arrays['x_train'])}, "
                           f"{len(arrays['x_test'])}")
    return {"x_train": arrays["x_train"][:train_points], "x_test": arrays["x_test"]}


def batch_stream(x_train: np.ndarray, epochs: int, seed: int) -> np.ndarray:
    """Every training batch of the run, in order: (steps * BATCH_SIZE, 2), shared by all models.

    Each epoch is a fresh permutation of the training points, the last incomplete batch dropped.
    """
    rng = np.random.default_rng([seed, 7])
    per_epoch = len(x_train) // BATCH_SIZE * BATCH_SIZE
    return np.concatenate([x_train[rng.permutation(len(x_train))[:per_epoch]]
                           for _ in range(epochs)]).astype(np.float32)


def optimizer(steps: int) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps))


def _mlp(inputs: int, outputs: int) -> keras.Sequential:
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(HIDDEN, "relu"),
                             keras.layers.Dense(HIDDEN, "relu"),
                             keras.layers.Dense(outputs, kernel_initializer="zeros")])


def tfp_baseline(name: str) -> tuple[tfd.Distribution, list]:
    """TFP's built-in RealNVP or MAF on 2-D data, with its default (unbounded) log-scales."""
    layers, variables = [], []
    for i in range(DEPTH):
        if name == "tfp_realnvp":
            net = _mlp(1, 2)
            variables += net.trainable_variables

            def shift_and_log_scale(x, units, net=net, **kwargs):
                shift, log_scale = tf.split(net(x), 2, axis=-1)
                return shift, log_scale

            layers.append(tfb.RealNVP(num_masked=1, shift_and_log_scale_fn=shift_and_log_scale))
        else:
            # A tf_keras layer, used standalone: it is built on its first call.
            made = tfb.AutoregressiveNetwork(params=2, event_shape=(2,),
                                             hidden_units=[HIDDEN, HIDDEN], activation="relu")
            made.build((None, 2))
            variables += made.trainable_variables
            layers.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made))
        if i < DEPTH - 1:
            layers.append(tfb.Permute([1, 0]))
    base = tfd.MultivariateNormalDiag(tf.zeros(2))
    return tfd.TransformedDistribution(base, tfb.Chain(layers)), variables


def _mean_nll(log_prob, x: np.ndarray) -> float:
    return -float(np.mean(np.concatenate(
        [np.asarray(log_prob(x[i:i + EVAL_BATCH])) for i in range(0, len(x), EVAL_BATCH)])))


def train_one(name: str, data: dict, stream: np.ndarray, seed: int) -> tuple[dict, object]:
    """Trains model `name` on `stream`; returns its record and its log-density function."""
    keras.utils.set_random_seed(seed)
    steps = len(stream) // BATCH_SIZE
    start = time.perf_counter()
    if name in OURS:
        model = OURS[name][1]()
        model.compile(optimizer(steps))
        history = model.fit(stream, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0)
        final_train = float(history.history["loss"][-1])
        parameters = model.count_params()
        log_prob = tf.function(model.log_prob)
    else:
        distribution, variables = tfp_baseline(name)
        step = nll_step(distribution, variables, optimizer(steps))
        losses = [step(x) for x in tf.data.Dataset.from_tensor_slices(stream).batch(BATCH_SIZE)]
        final_train = float(np.mean(losses))
        parameters = int(sum(np.prod(v.shape) for v in variables))
        log_prob = tf.function(distribution.log_prob)
    seconds = time.perf_counter() - start
    nll = _mean_nll(log_prob, data["x_test"])
    return {"test_nll_nats": round(nll, 3), "train_nll_nats_mean_over_run": round(final_train, 3),
            "parameters": parameters, "train_seconds": round(seconds, 1)}, log_prob


def nll_step(distribution, variables: list, optimizer):
    """One compiled training step of a TFP distribution on its mean negative log-likelihood."""

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(distribution.log_prob(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    return step


def settings(epochs: int, seed: int, train_points: int = TRAIN_POINTS) -> dict:
    steps = epochs * (train_points // BATCH_SIZE)
    sizes = {
        "nice": f"{DEPTH} additive couplings, conditioners 2x{HIDDEN} ReLU, diagonal scaling",
        "realnvp": f"{DEPTH} affine couplings (tanh log-scale), conditioners 2x{HIDDEN} ReLU",
        "glow": f"depth {DEPTH} (ActNorm, LU 1x1 conv, affine coupling with sigmoid scale), "
                f"conditioners 2x{HIDDEN} ReLU",
        "maf": f"{DEPTH} MADE layers 2x{HIDDEN} ReLU, affine (exp scale), order reversed "
               f"between layers",
        "iaf": f"MAF's {DEPTH} layers inverted (density is sequential, 2 passes)",
        "nsf": "library defaults: tfp_flows.nsf((2,)) (couplings, hidden, bins, bound as "
               "recorded in nsf_defaults)",
        "tfp_realnvp": f"tfb.RealNVP x{DEPTH} with tfb.Permute, conditioners 2x{HIDDEN} ReLU "
                       f"(zero-initialised output), unbounded log-scale",
        "tfp_maf": f"tfb.MaskedAutoregressiveFlow x{DEPTH} with tfb.Permute, "
                   f"tfb.AutoregressiveNetwork 2x{HIDDEN} ReLU (TFP defaults otherwise)",
    }
    nsf = tfp_flows.zoo.NSF((2,))
    return {"train_points": train_points, "test_points": TEST_POINTS, "epochs": epochs,
            "batch_size": BATCH_SIZE, "steps": steps,
            "optimizer": f"Adam, learning rate {LEARNING_RATE} cosine-decayed to 0 over the "
                         f"{steps} steps (keras.optimizers.schedules.CosineDecay)",
            "data_order": "one stream of batches (a fresh permutation each epoch, last "
                          "incomplete batch dropped) shared by every model",
            "learning_rate_note": "at 2e-3 TFP's tfb.MaskedAutoregressiveFlow (unbounded exp "
                                  "scale) diverged on two moons (NaN loss at step 175 of 1170),"
                                  " so every model runs at 1e-3",
            "seed": seed, "sizes": sizes,
            "nsf_defaults": {"num_couplings": nsf.num_couplings, "hidden": nsf.hidden,
                             "num_hidden": nsf.num_hidden, "bins": nsf.transform.bins,
                             "bound": nsf.transform.bound},
            "evaluation": "exact test NLL, nats per 2-D point, mean over the test points"}
