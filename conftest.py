"""Root conftest: loads the attnconf pytest plugin and the hypothesis profiles.

Profiles: ``ci`` (default; few examples, derandomized so every run draws the same cases) and ``thorough``
(many examples, random). Choose one with ``--hypothesis-profile=thorough``.
"""

from hypothesis import HealthCheck, settings

pytest_plugins = ["attnconf.pytest_plugin"]

_COMMON = dict(
    deadline=None,  # kernels compile on first call; wall-clock deadlines would be noise
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    database=None,  # a failure replayed from a local example database would make the verdict depend on the folder
)
settings.register_profile("ci", max_examples=12, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=300, **_COMMON)
settings.load_profile("ci")
