# Source this before pytest on a GPU machine: the device tool's copy of the checkout is not pip-installed, so the
# plugins' pytest11 entry points do not exist there; PYTEST_PLUGINS loads the same two modules by name (python3 -m
# pytest, run from the repository root, puts the root on sys.path; pytest-xdist workers inherit the variable).
# Where attnconf is installed nothing is set (the entry points load them, and a second registration would fail).
if ! python3 -c "import importlib.metadata as m; m.distribution('attnconf')" 2>/dev/null; then
  export PYTEST_PLUGINS=attnconf.pytest_plugin,attnconf.benchmarks.plugin
fi
