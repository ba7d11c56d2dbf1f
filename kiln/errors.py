"""The errors kiln raises on bad input. Every one derives from KilnError."""


class KilnError(Exception):
    """Base of every error kiln raises on bad input (model, IR text, arguments)."""


class ModelLoadError(KilnError):
    """A model file is missing, truncated or not a model of the expected format."""


class UnsupportedError(KilnError):
    """An op, domain, opset or dtype kiln does not support."""


class IRParseError(KilnError):
    """IR text that does not parse; the message names line and column."""


class VerifyError(KilnError):
    """A graph that breaks an IR invariant (SSA, types, arity)."""


class InputError(KilnError):
    """Inputs given at run time do not match the model (name, dtype, shape)."""


class OpError(KilnError):
    """An op got attributes or inputs it cannot work with."""
