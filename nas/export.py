"""ONNX export of a trained model with an onnxruntime parity check."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path,
                rtol: float = 1e-3, atol: float = 1e-4) -> dict:
    """Export `model` (eval mode, dynamic batch) and compare onnxruntime with torch on a
    random batch; returns {"path", "max_abs_diff", "parity"}.

    Parity is numpy's allclose (|a - b| <= atol + rtol * |b|): a barely trained network
    whose BN statistics lag its weights can emit logits of 1e6, where float32 alone
    differs in the first decimal. The file is written to a temp name first and renamed,
    so a failed export leaves no partial model."""
    import onnxruntime as ort

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    was_training = model.training
    model.eval()
    x = torch.randn(*input_shape)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes about shape-dependent Python ints
            torch.onnx.export(model, (x,), str(tmp), dynamo=False, input_names=["input"],
                              output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
            expected = model(x).numpy()
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    diff = float(np.abs(got - expected).max())
    return {"path": str(path), "max_abs_diff": diff,
            "parity": bool(np.allclose(got, expected, rtol=rtol, atol=atol))}
