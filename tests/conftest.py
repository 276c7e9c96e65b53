"""Test-wide set-up that must happen before TensorFlow initialises its devices."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# Two logical CPU devices let MirroredStrategy tests run on a one-CPU machine. This has to be
# done before any op runs, hence at import time of the conftest.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

# The examples of extending tfp_flows (examples/*.py) are user modules, imported by name.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples"))
