"""Errors a user can act on. The CLI prints them as one line; the service maps them to 4xx."""


class RetrieverError(Exception):
    """Base class for every error caused by input, configuration or environment."""


class DataError(RetrieverError):
    """A dataset is missing, malformed or inconsistent."""


class ModelError(RetrieverError):
    """A model cannot be loaded or does not match what it is used with."""


class IndexNotFoundError(RetrieverError):
    """No index exists under the requested name or path."""


class IndexMismatchError(RetrieverError):
    """An index was built with another model or dimension than the encoder in use."""


class NotReadyError(RetrieverError):
    """The service has not finished loading its indexes (the service answers 503)."""


class NotCalibratedError(RetrieverError):
    """The request needs calibrated relevance the index does not have (the service answers 409)."""
