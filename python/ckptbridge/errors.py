"""Typed exceptions of ckptbridge, one per engine error kind (core/errors.h).

Every error carries what it is about: ``path`` (the file, tensor or option), ``offset`` (a
byte offset in that file, or None) and, for a plan that cannot run, ``problems`` (one line per
offending tensor). ``IOError`` is also an ``OSError``; ``UsageError`` also a ``ValueError``.
"""
import builtins


class CkptbridgeError(Exception):
    """Base class of every ckptbridge error."""

    def __init__(self, message, path="", offset=None, detail=None, problems=()):
        super().__init__(message)
        self.message = message
        self.path = path
        self.offset = offset
        self.detail = detail if detail is not None else message
        self.problems = list(problems)


class FormatError(CkptbridgeError):
    """The bytes do not follow the format (truncated, corrupt, hostile input)."""


class IOError(CkptbridgeError, builtins.OSError):  # noqa: A001 - ckptbridge.IOError, as the engine names it
    """The operating system refused (open, read, write, rename)."""

    def __init__(self, message, path="", offset=None, detail=None, problems=()):
        CkptbridgeError.__init__(self, message, path, offset, detail, problems)

    def __str__(self):
        return self.message


class MappingError(CkptbridgeError):
    """A recipe, profile or target cannot account for every tensor: ``problems`` names them."""


class UsageError(CkptbridgeError, ValueError):
    """Wrong arguments or options."""


class Cancelled(CkptbridgeError):
    """The run was cancelled (its temporaries are removed; the previous output stays)."""


class CheckFailed(CkptbridgeError):
    """The output was written but a check after writing failed (e.g. a LoRA merge's verify);
    ``report`` holds the whole report, ``failures`` the failed checks."""

    def __init__(self, message, report=None, failures=()):
        super().__init__(message)
        self.report = report
        self.failures = list(failures)


_BY_KIND = {
    "FormatError": FormatError,
    "IoError": IOError,
    "MappingError": MappingError,
    "UsageError": UsageError,
    "Cancelled": Cancelled,
}


def from_json(info):
    """The exception for the C ABI's last-error JSON."""
    kind = info.get("kind", "InternalError")
    if kind == "MemoryError":
        return MemoryError(info.get("message", "out of memory"))
    cls = _BY_KIND.get(kind, CkptbridgeError)
    return cls(info.get("message", ""), info.get("path", ""), info.get("offset"), info.get("detail"),
               info.get("problems", ()))
