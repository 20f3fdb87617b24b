"""Channel-width rules of the official code, for any width multiplier."""

from __future__ import annotations


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """TF-slim rule (MobileNetV2, AutoNL, AtomNAS, MobileNeXt, ReXNet-lite): round to the
    nearest multiple of `divisor`, never below `min_value`, never more than 10 % down."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def rexnet_channels(width: float, final_ch: float = 180, depth: int = 16,
                    input_ch: float = 16, stem_ch: float = 32) -> tuple[int, list[int], list[int]]:
    """ReXNet: stem width, block input widths and block output widths.

    Channels grow additively by final_ch / depth per block and are rounded with Python's
    round (half to even) on float64; for width < 1 the stem and first block widths are
    divided by `width` first so they come back unchanged.
    """
    stem = stem_ch / width if width < 1.0 else stem_ch
    a = input_ch / width if width < 1.0 else input_ch
    ins, outs = [], []
    for i in range(depth):
        if i == 0:
            ins.append(int(round(stem * width)))
        else:
            ins.append(int(round(a * width)))
            a += final_ch / (depth * 1.0)
        outs.append(int(round(a * width)))
    return int(round(stem * width)), ins, outs


def rexnet_lite_channels(width: float, final_ch: float = 164, depth: int = 16,
                         input_ch: float = 16, divisor: int = 8) -> tuple[int, list[int], list[int]]:
    """ReXNet-lite: as ReXNet but over depth - 1 increments and make_divisible(int(round(.)))."""
    a = input_ch / width if width < 1.0 else input_ch
    stem = make_divisible(int(round((32 / width if width < 1.0 else 32) * width)), divisor)
    ins, outs = [], []
    for i in range(depth):
        cur = make_divisible(int(round(a * width)), divisor)
        if i == 0:
            ins.append(stem)
            outs.append(cur)
        else:
            ins.append(cur)
            a += final_ch / (depth - 1 * 1.0)
            outs.append(make_divisible(int(round(a * width)), divisor))
    return stem, ins, outs
