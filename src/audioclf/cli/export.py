"""`audioclf export`: a model folder as an ONNX graph and its card."""

from __future__ import annotations

import argparse

from audioclf.cli.options import emit
from audioclf.fitting.onnx_export import Quantize, export_onnx


def cmd_export(args: argparse.Namespace) -> int:
    done = export_onnx(args.model, args.out, quantize=Quantize(args.quantize), force=args.force)
    size = done.size_bytes / 1e6
    quantized = " (int8 weights)" if done.quantized is Quantize.INT8 else ""
    emit(f"exported         {done.out / 'model.onnx'}{quantized}, {size:.1f} MB, in {done.seconds:.1f} s")
    emit(f"checked          largest logit difference from the torch path {done.max_difference:.1e} (fp32 graph)")
    emit(f"run it           audioclf predict --model {done.out} FILES (onnxruntime, no torch)")
    return 0
