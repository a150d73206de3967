"""digest-feeds: daily ML paper digests -> per-category feeds, a static site and a newsletter."""

__version__ = "0.1.0"
