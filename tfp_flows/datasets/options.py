"""The options of `tfp_flows.datasets.load`, checked once, as every source receives them."""

from __future__ import annotations

import dataclasses
import numbers

__all__ = ["LoadOptions"]

# Bits of the 8-bit pixels that streamed sources read.
MAX_BITS = 8
DEFAULT_SHUFFLE_BUFFER = 10_000
# The options that only streamed sources take, with their defaults.
STREAMING_DEFAULTS = {"num_bits": MAX_BITS, "image_size": None, "crop": None,
                      "skip_bad_files": False}


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How to read a dataset: the keyword arguments of `tfp_flows.datasets.load`.

    A source's `load` reads the ones it needs; see `tfp_flows.datasets.load` for each. They
    are checked on construction.

    Raises:
        ValueError: For a value out of range.
    """

    batch_size: int = 64
    data_dir: str | None = None
    validation_fraction: float = 0.1
    seed: int = 0
    num_examples: int | None = None
    labels: bool = False
    stream: bool | None = None
    num_bits: int = MAX_BITS
    image_size: int | None = None
    crop: int | None = None
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
    skip_bad_files: bool = False
    dequantize: bool = True

    def __post_init__(self):
        if not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in the open interval (0, 1), got "
                             f"{self.validation_fraction!r}")
        if not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.num_examples is not None and (
                not isinstance(self.num_examples, numbers.Integral) or self.num_examples < 2):
            raise ValueError(f"num_examples must be None or an integer >= 2, got "
                             f"{self.num_examples!r}")
        if not isinstance(self.num_bits, numbers.Integral) or not 1 <= self.num_bits <= MAX_BITS:
            raise ValueError(f"num_bits must be an integer in 1..{MAX_BITS} (2**num_bits pixel "
                             f"levels), got {self.num_bits!r}")
        for option in ("image_size", "crop"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"{option} must be None or a positive integer, got {value!r}")
        if not isinstance(self.dequantize, bool):
            raise ValueError(f"dequantize must be True or False, got {self.dequantize!r}")
        if not isinstance(self.shuffle_buffer, numbers.Integral) or self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be a positive integer, got "
                             f"{self.shuffle_buffer!r}")

    def streaming_options_given(self) -> list[str]:
        """The streaming-only options set away from their defaults, as `'name=value'`."""
        return [f"{option}={getattr(self, option)!r}"
                for option, default in STREAMING_DEFAULTS.items()
                if getattr(self, option) != default]
