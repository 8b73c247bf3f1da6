"""The kit's own errors: each message names the problem and the fix (every notebook and command).

A command line shows an :class:`XlirError` as its message alone, with exit code 2
(:func:`xlir_utils.cli.run`); ``XLIR_DEBUG=1`` shows the traceback too.
"""
from __future__ import annotations


class XlirError(RuntimeError):
    """A problem the user can fix; the message says how."""


class DamagedFileError(XlirError):
    """A file the kit wrote is unreadable or no longer matches the checksum recorded with it."""


class BusyError(XlirError):
    """Another process holds the lock of what this one was about to write (a run, a store, results)."""


class SettingsError(XlirError, ValueError):
    """A setting (``XLIR_PROFILE``, ``XLIR_SEEDS``, ``XLIR_THREADS``, a command-line option) has a
    value the kit cannot use; the message names the setting and a valid value."""


class WriteError(XlirError, OSError):
    """A file could not be written: the disk is full, or the folder is read-only or not writable.

    Also an :class:`OSError`, so that a caller which tolerates a failed cache write (the
    evaluation embedding store) keeps going; ``errno`` is the original error's.
    """
