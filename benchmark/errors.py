"""Errors that fhbench reports to the user as one clear line.

Every error names its culprit (file, line, model, image index) so that the CLI can
print it as-is and exit non-zero. Nothing that raises one of these may have written
a partial result to the store.
"""


class FhbenchError(Exception):
    """Base class: a problem the user can fix; the CLI prints str(err) and exits 2."""


class UnknownNameError(FhbenchError, KeyError):
    """A model, protocol, evaluator, dataset or degradation name that no registry knows."""

    def __str__(self):  # KeyError would repr() the message
        return self.args[0] if self.args else ""


class DataError(FhbenchError):
    """Missing, corrupt or malformed input data (images, pair lists, configs)."""


class DataMissing(DataError):
    """A dataset's file or folder is absent: ``--protocol all`` skips the protocol (corrupt or
    malformed data, a plain DataError, fails the command instead)."""


class AdapterError(FhbenchError):
    """An SR adapter was misconfigured or returned a bad batch (shape, NaN, range)."""


class IncompatibleModelError(AdapterError):
    """The model cannot run this protocol level (its scale, input or output size); raised
    before any work, so ``--protocol all`` can skip the protocol and say why."""


class EvaluatorUnavailable(FhbenchError):
    """A face-recognition evaluator cannot run here (weights or package missing)."""


class MetricError(FhbenchError):
    """Inputs to a metric are inconsistent (lengths differ, no genuine pairs, ...)."""


class ConfigError(FhbenchError):
    """A protocol or training config has an unknown key or a wrong type."""


def short_error(err: BaseException, limit: int = 200) -> str:
    """A library exception as one short line: its type and the first line of its message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def some_names(names, shown: int = 3) -> str:
    """The first ``shown`` culprits an error names, then "and N more": one line however many there are."""
    names = list(names)
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
