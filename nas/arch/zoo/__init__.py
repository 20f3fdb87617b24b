"""Published architectures of the five papers (and their MobileNetV2 baselines).

Each family module registers its names; `get_spec(name)` returns a validated spec.
"""

from nas.arch.zoo import atomnas, autonl, darts, mobilenetv2, mobilenext, moga, rexnet  # noqa: F401
from nas.arch.zoo.registry import ZOO, UnknownArch, ZooEntry, entry, get_spec

__all__ = ["ZOO", "UnknownArch", "ZooEntry", "entry", "get_spec"]
