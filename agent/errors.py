"""Typed errors of the edge agent.

Every error an operator can meet carries a message key. The CLI and the feedback device turn
the key into one line of Vietnamese (or English) from `agent.messages`; the log gets the
English text and the technical detail. No traceback reaches an operator.
"""

from __future__ import annotations


class SohoaError(Exception):
    """Base of every expected failure: `key` names the operator message, `detail` is technical."""

    exit_code = 1

    def __init__(self, key: str, detail: str = "", **params: object) -> None:
        super().__init__(f"{key}: {detail}" if detail else key)
        self.key = key
        self.detail = detail
        self.params = params


class ConfigError(SohoaError):
    exit_code = 78  # EX_CONFIG


class WrongUser(SohoaError):
    """Run as root on a station whose data belongs to the service user, or as a user who
    cannot read it: files root would create there stop the service."""

    exit_code = 77  # EX_NOPERM


class ScannerError(SohoaError):
    """The scanner could not be opened or stopped mid-batch."""


class StorageError(SohoaError):
    """A durable write failed (fsync/rename error, disk full). Fatal for the page concerned."""


class DiskFullError(StorageError):
    pass


class ImportRefused(SohoaError):
    """A file given to `import` cannot be decoded; the rest of the batch is kept."""


class SyncError(SohoaError):
    """The broker or the server could not be reached, or did not acknowledge in time."""

    exit_code = 75  # EX_TEMPFAIL: try again later
