"""Geometry of ONNX Conv / AveragePool nodes for the importer, and pooling folded into synapses.

Conv: square kernel, equal strides, symmetric square padding (explicit ``pads`` or ``auto_pad``
``VALID`` / ``SAME_UPPER`` / ``SAME_LOWER`` where that is symmetric), no dilation, one group.
AveragePool: no padding, ``ceil_mode`` 0; before a Conv only ``k x k`` windows with stride ``k``
(folded into the conv's kernel, see :func:`snn2loihi.train.layers.pool_fold_error`); before
Flatten + Gemm/MatMul any window and stride (and GlobalAveragePool), folded into the dense
weight exactly (:func:`fold_pools_into_dense`). Every refusal names the node and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from snn2loihi.export.errors import NotDeployableError
from snn2loihi.train.layers import conv_out_size, pool_fold_error

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


@dataclass(frozen=True)
class Pool:
    """An average pool waiting to be folded: window ``kh x kw``, strides ``sh, sw`` (rows)."""

    kh: int
    kw: int
    sh: int
    sw: int
    node: str

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Pooled (H, W) of an input of ``hw`` (floor rule, no padding)."""
        return (hw[0] - self.kh) // self.sh + 1, (hw[1] - self.kw) // self.sw + 1


def node_name(node) -> str:
    return node.name or (node.output[0] if node.output else "?")


def refuse(node, why: str) -> NotDeployableError:
    return NotDeployableError(f"ONNX node '{node_name(node)}' ({node.op_type}): {why}")


def int_list(node, attrs: dict, name: str, default: list[int] | None, length: int) -> list[int]:
    """Attribute ``name`` as ``length`` integers (``default`` when absent)."""
    value = attrs.get(name, default)
    if value is None:
        raise refuse(node, f"attribute '{name}' is missing")
    ok = isinstance(value, list | tuple) and len(value) == length
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise refuse(node, f"attribute {name} = {value!r}: expected {length} integers")
    return [int(v) for v in value]


def int_attr(node, attrs: dict, name: str, default: int) -> int:
    value = attrs.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse(node, f"attribute {name} = {value!r}: expected an integer")
    return int(value)


def auto_pad(node, attrs: dict) -> str:
    value = attrs.get("auto_pad", b"NOTSET")
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if text not in AUTO_PADS:
        raise refuse(node, f"auto_pad {text!r}: expected one of {', '.join(AUTO_PADS)}")
    return text


def _same_pads(node, mode: str, kernel: int, stride: int, in_hw) -> list[int]:
    """ONNX SAME padding as [top, left, bottom, right]; refused where it is asymmetric."""
    if in_hw is None:
        raise refuse(node, f"auto_pad {mode} needs a fixed (C, H, W) graph input shape")
    half = []
    for n in in_hw:
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        if total % 2:
            raise refuse(
                node,
                f"auto_pad {mode} pads {total} rows/columns on input size {n} (kernel {kernel}, "
                f"stride {stride}), one more at the "
                f"{'end' if mode == 'SAME_UPPER' else 'start'}: asymmetric; use symmetric pads",
            )
        half.append(total // 2)
    return half + half


def conv_geometry(node, attrs: dict, weight_shape, in_hw) -> tuple[int, int, int]:
    """``(kernel, stride, padding)`` of a Conv with weight ``(Cout, Cin, k, k)`` on an input
    of ``in_hw`` (None if unknown); refuses what NetX's one square geometry cannot express."""
    if len(weight_shape) != 4:
        raise refuse(node, f"weight shape {tuple(weight_shape)}: only 2-D convs are supported")
    kh, kw = (int(v) for v in weight_shape[2:])
    if kh != kw:
        raise refuse(node, f"kernel {kh}x{kw} is not square; use a k x k kernel")
    if "kernel_shape" in attrs and int_list(node, attrs, "kernel_shape", None, 2) != [kh, kw]:
        raise refuse(node, f"kernel_shape {attrs['kernel_shape']} != weight kernel {kh}x{kw}")
    strides = int_list(node, attrs, "strides", [1, 1], 2)
    if min(strides) < 1 or strides[0] != strides[1]:
        raise refuse(node, f"strides {strides}: only equal strides >= 1 are supported")
    dilations = int_list(node, attrs, "dilations", [1, 1], 2)
    if dilations != [1, 1]:
        raise refuse(node, f"dilations {dilations}: dilated convs are not supported")
    group = int_attr(node, attrs, "group", 1)
    if group != 1:
        raise refuse(node, f"group {group}: grouped convs are not supported; use group 1")
    mode = auto_pad(node, attrs)
    if mode == "VALID":
        pads = [0, 0, 0, 0]
    elif mode == "NOTSET":
        pads = int_list(node, attrs, "pads", [0, 0, 0, 0], 4)
    else:
        pads = _same_pads(node, mode, kh, strides[0], in_hw)
    if min(pads) < 0:
        raise refuse(node, f"pads {pads}: negative padding is not supported")
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise refuse(node, f"pads {pads} are asymmetric (begin != end); use symmetric pads")
    if pads[0] != pads[1]:
        raise refuse(node, f"pads {pads}: H and W padding differ; use one padding for both")
    return kh, strides[0], pads[0]


def average_pool(node, attrs: dict, shape) -> Pool:
    """The window of an AveragePool node on an activation of ``shape`` (C, H, W)."""
    kh, kw = int_list(node, attrs, "kernel_shape", None, 2)
    sh, sw = int_list(node, attrs, "strides", [1, 1], 2)
    if min(kh, kw, sh, sw) < 1:
        raise refuse(node, f"kernel_shape {[kh, kw]} / strides {[sh, sw]} must be >= 1")
    mode = auto_pad(node, attrs)
    pads = int_list(node, attrs, "pads", [0, 0, 0, 0], 4)
    if mode not in ("NOTSET", "VALID") or any(pads):
        raise refuse(
            node, f"pads {pads} / auto_pad {mode}: padded average pooling is not supported"
        )
    if int_attr(node, attrs, "ceil_mode", 0) != 0:
        raise refuse(node, "ceil_mode 1 is not supported; use ceil_mode 0")
    if int_list(node, attrs, "dilations", [1, 1], 2) != [1, 1]:
        raise refuse(node, f"dilations {attrs['dilations']}: dilated pooling is not supported")
    return _checked(node, Pool(kh, kw, sh, sw, node_name(node)), shape)


def global_average_pool(node, shape) -> Pool:
    """GlobalAveragePool on ``shape`` (C, H, W): one window over the whole map."""
    if shape is None or len(shape) != 3:
        raise refuse(node, f"needs a known (C, H, W) input, got {shape}")
    return Pool(shape[1], shape[2], shape[1], shape[2], node_name(node))


def _checked(node, pool: Pool, shape) -> Pool:
    if shape is None or len(shape) != 3:
        raise refuse(node, f"needs a (C, H, W) input of fixed size, got {shape}")
    if min(pool.out_hw(shape[1:])) < 1:
        raise refuse(node, f"window {pool.kh}x{pool.kw} is larger than the input {shape[1:]}")
    return pool


def conv_pool_factor(node, pools: list[Pool]) -> int:
    """The pool factor ``p`` of AveragePools folded into the Conv ``node`` (1 if none)."""
    p = 1
    for pool in pools:
        if not pool.kh == pool.kw == pool.sh == pool.sw:
            raise refuse(
                node,
                f"AveragePool '{pool.node}' ({pool.kh}x{pool.kw}, strides {pool.sh},{pool.sw}) "
                "before a Conv: only k x k windows with stride k fold into a conv",
            )
        p *= pool.kh
    return p


def check_pool_fold(node, pools: list[Pool], in_shape, kernel: int, stride: int, padding: int):
    """Refuse when the folded conv is not exactly ``avg_pool -> conv`` on ``in_shape`` (C, H, W)."""
    p = conv_pool_factor(node, pools)
    if p == 1 or in_shape is None:
        return
    for n in in_shape[1:]:
        why = pool_fold_error(n, p, kernel, stride, padding)
        if why is not None:
            names = ", ".join(f"'{q.node}'" for q in pools)
            raise refuse(node, f"AveragePool {names} (pool {p}) folded into this conv: {why}")


def conv_out_hw(node, in_hw, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    out = tuple(conv_out_size(n, kernel, stride, padding) for n in in_hw)
    if min(out) < 1:
        raise refuse(node, f"input {tuple(in_hw)} is too small for kernel {kernel}")
    return out  # type: ignore[return-value]


def fold_pools_into_dense(weight: np.ndarray, in_shape, pools: list[Pool]) -> np.ndarray:
    """A dense weight on pooled features ``(Nout, C*Hp*Wp)`` as the same map on the unpooled
    ``in_shape`` (C, H, W): ``(Nout, C*H*W)``, each window's weight spread evenly over its
    ``kh*kw`` inputs (inputs no window covers get 0). Exact for any sizes."""
    shapes = [tuple(in_shape)]
    for pool in pools:
        shapes.append((shapes[-1][0], *pool.out_hw(shapes[-1][1:])))
    out = weight.reshape(weight.shape[0], *shapes[-1])
    for pool, (c, h, w) in zip(reversed(pools), reversed(shapes[:-1]), strict=True):
        spread = np.zeros((out.shape[0], c, h, w), dtype=np.float64)
        share = out / (pool.kh * pool.kw)
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                rows = slice(i * pool.sh, i * pool.sh + pool.kh)
                cols = slice(j * pool.sw, j * pool.sw + pool.kw)
                spread[:, :, rows, cols] += share[:, :, i, j, None, None]
        out = spread
    return out.reshape(weight.shape[0], -1)
