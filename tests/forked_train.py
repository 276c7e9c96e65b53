"""Runs the training command again and again, each run a forked child of this process.

`python tests/forked_train.py LOG` reads lines from stdin, each a JSON `[kill_point, flags]`,
and for each runs `python -m tfp_flows.train FLAGS` with TFP_FLOWS_KILL_AT set to `kill_point`
(unset for null), so that the run SIGKILLs itself at that point (see
`tfp_flows.training.kill_points`); then it prints the run's exit code on a line of its own (-9 for a
run killed by SIGKILL). The runs' output goes to the file LOG.

This process imports TensorFlow once and runs no TensorFlow op, so each child starts a fresh
TensorFlow runtime without paying for the import again (seconds per run).
"""

import json
import os
import sys
import traceback

from absl import app

from tfp_flows import train
from tfp_flows.training.kill_points import KILL_AT


def _run(kill_point: str | None, argv: list[str], log: str) -> int:
    """Runs the command in a forked child; returns its exit code (negative: a signal)."""
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.pop(KILL_AT, None)
    if kill_point is not None:
        os.environ[KILL_AT] = kill_point
    code = 1
    try:
        app.run(train.main, argv=["train", *argv], flags_parser=train._parse_flags)
    except SystemExit as exit_:
        code = exit_.code or 0
    except BaseException:
        traceback.print_exc()
    finally:
        # os._exit skips the interpreter's shutdown, and with it the flushing of the output.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    train.define_flags()
    for line in sys.stdin:
        kill_point, argv = json.loads(line)
        print(_run(kill_point, argv, sys.argv[1]), flush=True)
