"""One exception hierarchy for every failure a user can cause.

Library code raises these; only the command lines turn them into one line of text and an exit code.
Each message is a full sentence that names the thing at fault, so it can be printed as it is.
"""

from __future__ import annotations


class VetohashError(Exception):
    """Base of every error vetohash raises on purpose."""


class ImageError(VetohashError):
    """An image could not be read or is not acceptable (corrupt, empty, too large, not an image)."""


class ImageTooLargeError(ImageError):
    """An image has more pixels than the decoder is allowed to allocate (decompression bomb guard)."""


class SpecError(VetohashError):
    """A model spec is unknown, malformed or inconsistent."""


class WeightsError(VetohashError):
    """Weights do not match the spec: missing or unexpected names, wrong dtype or shape."""


class HashFormatError(VetohashError):
    """A hash's text or byte form is malformed (wrong length, not hex)."""


class KeyFileError(VetohashError):
    """A key file is missing, malformed, or unreadable with the given passphrase."""


class BundleError(VetohashError):
    """A bundle was refused. Subclasses say why."""


class BundleTooLargeError(BundleError):
    """The bundle, or one of its fields, is larger than the format allows."""


class BundleFormatError(BundleError):
    """The bytes are not a well-formed bundle (truncated, wrong types, unknown version)."""


class BundleSignatureError(BundleError):
    """The signature does not verify, or the signing key is not trusted."""


class BundleExpiredError(BundleError):
    """The bundle's expiry time has passed (or its creation time lies in the future)."""


class BundleContentError(BundleError):
    """The signed payload is well formed but inconsistent: weights against spec, hash widths, duplicates."""


class ModelFileError(VetohashError):
    """A file given as a model is not a vetohash model file."""
