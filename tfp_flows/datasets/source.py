"""The data-source extension point: `Source`, `register_source`, and how a spec finds one.

A dataset spec is the string given to `tfp_flows.datasets.load` ("two_moons", "digits",
"/data/fashion-mnist", "faces.npz", "mnist", ...). Each registered source says whether it
recognises a spec, and reads the specs it recognises. `resolve(spec)` picks the source:

1. A spec `"<source name>:<argument>"` whose prefix is a registered source's name goes to that
   source, which reads `<argument>` (e.g. `"idx:/data/fashion-mnist"`, `"tfds:mnist"`): this
   is how a spec reaches a source that would not be asked first, a user's included.
2. Otherwise the sources are asked in registration order (the built-ins, registered when
   `tfp_flows.datasets` is imported: idx, npz, directory, toys, digits; then users' sources,
   in the order their modules register them), and the first that recognises the spec reads
   it. A user's source therefore never takes a spec a built-in recognises, unless named by
   its prefix.
3. Sources marked `fallback` (tfds, which takes any plain name as a TFDS dataset name) are
   asked last, after every other source declined.

A spec no source recognises is refused with one error that lists every registered source
and what it accepts (`describe_sources`).
"""

from __future__ import annotations

import abc
import os
from typing import ClassVar

from tfp_flows.datasets.arrays import Arrays, array_splits, truncate
from tfp_flows.datasets.options import LoadOptions
from tfp_flows.datasets.splits import Splits
from tfp_flows.registry import Registry

__all__ = ["ArraySource", "Source", "describe_sources", "register_source"]


class Source(abc.ABC):
    """A kind of dataset that `tfp_flows.datasets.load` reads.

    A subclass says what it accepts in one line (`description`), which specs it recognises
    (`recognises`) and how it reads one (`load`), and is registered with `register_source`.
    Sources are stateless: `load` makes a new instance for each spec. Most sources hold their
    examples in memory and subclass `ArraySource`, which only reads the arrays.

    Attributes:
        description: One line saying which specs the source reads, for error messages and
            the training command's `--dataset` help (e.g. "a path to a .csv file of float
            vectors, one per row").
        fallback: Whether the source is asked only after every other one declined (for a
            source that takes any name, as TFDS does).
    """

    description: ClassVar[str] = ""
    fallback: ClassVar[bool] = False
    registered_name: ClassVar[str]

    @abc.abstractmethod
    def recognises(self, spec: str) -> bool:
        """Whether this source reads `spec` (cheaply: `load` reports what is wrong with it)."""

    @abc.abstractmethod
    def load(self, spec: str, options: LoadOptions) -> Splits:
        """The train/validation/test pipelines of `spec`, as `tfp_flows.datasets.load`
        describes them (the `name` of the result is replaced by the spec as given).

        Raises:
            ValueError: For a spec it cannot read, or options it does not take.
        """


class ArraySource(Source):
    """A source whose examples fit in memory: it defines `read`, and the pipelines, their
    splits, noise and order are those of every array source (see `tfp_flows.datasets.load`).

    The arrays `read` returns are truncated to `options.num_examples` (shared between train
    and test in proportion); a source may read fewer to begin with.
    """

    @abc.abstractmethod
    def read(self, spec: str, options: LoadOptions) -> Arrays:
        """The train and test examples of `spec` (a source without a test split of its own
        carves one with `tfp_flows.datasets.carve_test`, seeded by `options.seed`)."""

    def arrays(self, spec: str, options: LoadOptions) -> Arrays:
        """`read`, truncated to `options.num_examples`."""
        return truncate(self.read(spec, options), options.num_examples)

    def load(self, spec: str, options: LoadOptions) -> Splits:
        if options.stream:
            raise ValueError(f"stream=True applies to TFDS datasets and directories of TFRecord "
                             f"or image files, not to {spec!r}, which the "
                             f"{self.registered_name} source reads into arrays; pass "
                             f"stream=None")
        given = options.streaming_options_given()
        if given:
            raise ValueError(f"{', '.join(given)} applies to streamed sources only (TFDS "
                             f"datasets, directories of TFRecord or image files), not to "
                             f"{spec!r}, which the {self.registered_name} source reads into "
                             f"arrays")
        return array_splits(self.arrays(spec, options), spec, options)


SOURCES = Registry("source", Source)
"""The data sources registry: name -> `Source` subclass, asked in registration order."""


def register_source(name: str):
    """A class decorator that registers a `Source` subclass under `name`.

    The name must be a Python identifier not taken by another source (registering the same
    class again is harmless); it also selects the source explicitly in a spec
    `"<name>:<argument>"`. See `tfp_flows.datasets.source` for the order sources are asked in.

    Raises:
        TypeError: For a class that is not a `Source` subclass.
        ValueError: For a name that is taken or not an identifier, or a class without a
            one-line `description`.
    """
    register = SOURCES.register(name)

    def decorate(cls):
        if isinstance(cls, type) and issubclass(cls, Source):
            description = cls.description
            if not isinstance(description, str) or not description.strip() or (
                    "\n" in description):
                raise ValueError(f"register_source({name!r}) needs a one-line description of "
                                 f"the specs {cls.__qualname__} reads, got {description!r}")
        return register(cls)

    return decorate


def describe_sources() -> str:
    """One line listing the registered sources in the order they are asked, each with what
    it accepts."""
    return "; ".join(f"{cls.description} [{name}]" for name, cls in _ordered())


def is_path_like(spec: str) -> bool:
    """Whether `spec` can only be meant as a file system path (TFDS names may contain '/', as
    in "cifar10/3.0.2", so only unambiguous path forms count)."""
    return spec.endswith(".npz") or spec.startswith(("/", "./", "../", "~"))


def resolve(spec: str) -> tuple[Source, str]:
    """The source that reads `spec`, and the spec it reads (without a source-name prefix).

    Raises:
        TypeError: For a spec that is not a string.
        ValueError: For a spec no registered source recognises.
    """
    if not isinstance(spec, str):
        raise TypeError(f"a dataset spec is a string (a name or a path), got {spec!r}")
    prefix, colon, argument = spec.partition(":")
    if colon and prefix in SOURCES:
        return SOURCES.get(prefix)(), argument
    for _, cls in _ordered():
        source = cls()
        if source.recognises(spec):
            return source, spec
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        problem = f"dataset directory {path!r} holds no dataset files"
    elif os.path.exists(path):
        problem = f"no source reads the file {path!r}"
    elif is_path_like(spec):
        problem = f"dataset path {path!r} does not exist"
    else:
        problem = f"unknown dataset {spec!r}"
    raise ValueError(f"{problem}; expected {describe_sources()} (a spec SOURCE:ARGUMENT picks "
                     f"the source)")


def _ordered():
    """The registered (name, class) pairs in the order `resolve` asks them."""
    entries = SOURCES.items()
    return ([entry for entry in entries if not entry[1].fallback]
            + [entry for entry in entries if entry[1].fallback])
