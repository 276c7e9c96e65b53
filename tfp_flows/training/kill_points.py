"""The test hook that kills a training command at an exact moment instead of after a sleep.

A command run with the environment variable `KILL_AT` (TFP_FLOWS_KILL_AT) set to a point's
name SIGKILLs itself on reaching that point. The points: "iteration:<n>" after the optimizer's
n-th update (and its commit, if any), "commit:<n>" between writing the n-th commit's weights
and publishing its state.json, "epoch_end:<n>" after epoch n's validation and best model and
before its commit, and "evaluation" between the splits of the final evaluation.
"""

from __future__ import annotations

import os
import signal

__all__ = ["KILL_AT", "kill_point"]

KILL_AT = "TFP_FLOWS_KILL_AT"


def kill_point(point: str) -> None:
    """SIGKILLs this process when `point` is the one `KILL_AT` names."""
    if os.environ.get(KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)
