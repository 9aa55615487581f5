"""Every third-party module that tfmc's code imports comes from a distribution pinned in requirements.txt and setup.py."""
import ast
import functools
import importlib.metadata
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_PARTY = {"tfmc", "tflite_bench", "tfmc_console"}


def _normalise(name):
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules():
    """{module as imported: first file that imports it} for the absolute imports of the packaged code."""
    files = [os.path.join(ROOT, "tfmc_console.py")]
    for package in ("tfmc", "tflite_bench"):
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    found = {}
    for path in files:
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                found.setdefault(module, os.path.relpath(path, ROOT))
    return found


@functools.lru_cache(maxsize=None)
def _distributions_of_top_level_modules():
    return importlib.metadata.packages_distributions()


def _distribution(module):
    """The installed distribution that provides ``module`` (for a namespace such as google., the one with its sub-package)."""
    top = module.split(".")[0]
    candidates = _distributions_of_top_level_modules().get(top, [])
    if len(candidates) > 1:
        sub = "/".join(module.split(".")[:2])
        candidates = [d for d in candidates
                      if any(str(f).startswith(sub + "/") for f in importlib.metadata.files(d) or ())]
    assert len(candidates) == 1, f"{module}: no single installed distribution provides it ({candidates})"
    return _normalise(candidates[0])


def _pins(text):
    return {_normalise(m.group(1)): m.group(2) for m in re.finditer(r"^\s*\"?([A-Za-z0-9_.-]+)==([^\s\",]+)", text, re.M)}


def test_every_imported_third_party_module_is_pinned_in_requirements_and_setup():
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        requirements = _pins(f.read())
    with open(os.path.join(ROOT, "setup.py")) as f:
        setup = ast.parse(f.read())
    call = next(n for n in ast.walk(setup) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    install = next(k.value for k in call.keywords if k.arg == "install_requires")
    install_requires = _pins("\n".join(ast.literal_eval(install)))
    third_party = {m: path for m, path in _imported_modules().items()
                   if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] not in FIRST_PARTY}
    distributions = {}
    for module, path in sorted(third_party.items()):
        distributions.setdefault(_distribution(module), f"{module} ({path})")
    assert {"tensorflow", "tf-keras", "numpy", "tqdm", "scipy", "h5py", "protobuf"} <= set(distributions)
    unpinned = {d: where for d, where in distributions.items() if d not in requirements or d not in install_requires}
    assert unpinned == {}, "imported but not pinned (==) in both requirements.txt and setup.py install_requires"
    for dist in distributions:
        assert requirements[dist] == install_requires[dist] == importlib.metadata.version(dist), dist
