"""`audioclf export`: a model folder as an ONNX graph and its card."""

from __future__ import annotations

import argparse

from audioclf.cli.options import emit
from audioclf.fitting.onnx_export import Quantize, export_onnx
from audioclf.io.manifest import audio_files


def cmd_export(args: argparse.Namespace) -> int:
    check = audio_files(args.check) if args.check else []
    done = export_onnx(args.model, args.out, quantize=Quantize(args.quantize), check=check, force=args.force)
    size = done.size_bytes / 1e6
    quantized = " (int8 weights)" if done.quantized is Quantize.INT8 else ""
    emit(f"exported         {done.out / 'model.onnx'}{quantized}, {size:.1f} MB, in {done.seconds:.1f} s")
    emit(f"checked          largest logit difference from the torch path {done.max_difference:.1e} (fp32 graph)")
    if done.agreement is not None:
        a = done.agreement
        agree = f"top-1 agreement with fp32 {a.top1:.3f} on {a.clips} recordings"
        emit(f"int8             {agree} (largest |Δp| {a.max_difference:.3f})")
    emit(f"run it           audioclf predict --model {done.out} FILES (onnxruntime, no torch)")
    return 0
