"""Training a flow: what `python -m tfp_flows.train` runs, as a library.

`run(TrainConfig(...))` (or `run({...})`) trains one run directory, resuming it when it finds
one unfinished. The modules, each below the ones that import it:

    errors          ConfigError (bad input) and TrainingError (training gone bad)
    files           atomic writes of the run directory's files, and reading them back
    kill_points     the test hook that SIGKILLs a run at an exact moment
    config          TrainConfig, its checks, the families' flags
    plugins         importing the --plugin modules
    strategies      the distribution strategy
    data            the splits, flattened for the autoregressive families
    lock            the run directory's lock
    run_directory   config.json: the model a directory holds, its settings and their changes
    checkpoint      the atomic commit of the training state, and resuming from it
    callbacks       the non-finite, best-model and patience rules; throughput
    evaluation      exact NLL and bits/dim per split
    figures         training_curve.png, samples.png, density.png
    loop            `run`, which wires them together
"""

from tfp_flows.training.checkpoint import Checkpoint
from tfp_flows.training.config import STRATEGIES, TrainConfig
from tfp_flows.training.errors import ConfigError, TrainingError
from tfp_flows.training.loop import run

__all__ = ["STRATEGIES", "Checkpoint", "ConfigError", "TrainConfig", "TrainingError", "run"]
