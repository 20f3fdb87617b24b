"""MoGA: a FairNAS strict-fairness supernet over the MobileNetV3 space (fairnas), a latency
lookup table, and the weighted NSGA-II (nsga); `search.MoGA` is the method."""
