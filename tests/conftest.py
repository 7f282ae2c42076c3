"""Test-suite settings: hypothesis runs derandomized (the same examples on every run and machine), so CI is
reproducible; no example database is written into the clone."""

from hypothesis import settings

settings.register_profile("lrnde", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("lrnde")
