"""The errors eegbench raises, for callers and for submissions.

Every error caused by what a user passed or by the data derives from :class:`EegbenchError`: the
command line prints its message on one line and exits with code 2. Submissions raise
:class:`InvalidInputError` for a configuration they cannot work with.
"""

from eegbench._check import (
    DataError,
    EegbenchError,
    InvalidInputError,
    MissingDataError,
    StorageError,
    SubmissionError,
    TransductiveMethodError,
    UnknownNameError,
)
from eegbench._guard import ForbiddenInSubmissionError

__all__ = ["DataError", "EegbenchError", "ForbiddenInSubmissionError", "InvalidInputError", "MissingDataError",
           "StorageError", "SubmissionError", "TransductiveMethodError", "UnknownNameError"]
