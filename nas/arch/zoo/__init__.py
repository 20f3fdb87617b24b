"""Published architectures of the five papers (and their MobileNetV2 baselines).

Each family module registers its names on import, in the order `python -m nas.zoo`
lists them; `get_spec(name)` returns a spec for any number of classes and input size.
"""

# isort: off
from nas.arch.zoo import mobilenetv2, moga, autonl, atomnas, rexnet, mobilenext, darts  # noqa: F401
# isort: on
from nas.arch.zoo.registry import ZOO, UnknownArch, ZooEntry, entry, get_spec

__all__ = ["ZOO", "UnknownArch", "ZooEntry", "entry", "get_spec"]
