"""DARTS_V1 / DARTS_V2 cells (quark0/darts cnn/genotypes.py) in the CIFAR-10 evaluation setting.

Setting of the official train.py: 36 initial channels, 20 cells, auxiliary head, drop
path 0.2 (ramped from 0 by the trainer), PyTorch-default affine BN. V2 is the cell behind
the paper's second-order result and V1 the first-order one (the usual reading).
"""

from __future__ import annotations

from functools import partial

from nas.arch.spec import BatchNormSpec, CellSpec, GenotypeSpec
from nas.arch.zoo.registry import ZooEntry, register

# (normal edges, reduce edges); two (op, input) edges per node 2..5, concat = nodes 2..5.
GENOTYPES = {
    "darts_v1": (
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)]),
    "darts_v2": (
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)]),
}


def darts(genotype: str, *, num_classes: int = 10, input_size: int = 32,
          init_channels: int = 36, layers: int = 20, auxiliary: bool | None = None,
          drop_path: float = 0.2, name: str | None = None) -> CellSpec:
    """A DARTS evaluation network with the named published cell (fresh lists every call).

    The auxiliary head is the CIFAR one, so by default it is on only at 32x32 input.
    """
    if auxiliary is None:
        auxiliary = input_size == 32
    normal, reduce = GENOTYPES[genotype]
    return CellSpec(
        name=name or genotype, num_classes=num_classes, input_size=input_size,
        bn=BatchNormSpec(eps=1e-5, momentum=0.1),
        genotype=GenotypeSpec(normal=list(normal), normal_concat=[2, 3, 4, 5],
                              reduce=list(reduce), reduce_concat=[2, 3, 4, 5]),
        init_channels=init_channels, layers=layers, auxiliary=auxiliary, drop_path=drop_path)


register(ZooEntry("darts_v1", partial(darts, "darts_v1"), "DARTS (quark0/darts DARTS_V1)",
                  "3.3 M / - / 3.00 % err (DARTS 1st order)", official_params=None,
                  num_classes=10, input_size=32))
register(ZooEntry("darts_v2", partial(darts, "darts_v2"), "DARTS (quark0/darts DARTS_V2)",
                  "3.3 M / - / 2.76 % err (DARTS 2nd order)", official_params=3_349_342,
                  num_classes=10, input_size=32))
