"""vetohash: the library both parties share (model specs, preprocessing, hashing, matching, bundles, keys)."""

__version__ = "0.1.0"
