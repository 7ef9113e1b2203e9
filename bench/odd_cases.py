"""The odd-but-real models and inputs of ``bench/odd_inputs.py``: each case builds (model, inputs, second inputs,
prune options, call kwargs).  The builders live in ``odd_case_*.py`` by theme."""
from __future__ import annotations

import torch

from graphprune.testing import randomize_

import odd_case_io as io_
import odd_case_models as models
import odd_case_more as more
import odd_case_ops as ops
from odd_case_base import Case, convnet, img


def cases():
    out = [
        Case("weight_norm", "parametrizations.weight_norm on two convs", models.weight_norm_new),
        Case("spectral_norm", "parametrizations.spectral_norm on a conv and the fc", models.spectral_norm_new),
        Case("orthogonal", "parametrizations.orthogonal on a square Linear", models.orthogonal_new),
        Case("custom_parametrization", "register_parametrization(weight, w*2)", models.custom_parametrization),
        Case("weight_norm_old", "old nn.utils.weight_norm (pre-hook)", models.weight_norm_old),
        Case("spectral_norm_old", "old nn.utils.spectral_norm (pre-hook, power iteration buffers)",
             models.spectral_norm_old),
        Case("module_twice", "one Conv called twice in a row", lambda: (models.Twice().eval(), img())),
        Case("tied_embedding", "Embedding tied to the output Linear",
             lambda: (models.TiedLM().eval(), torch.randint(0, 50, (2, 6)))),
        Case("conv_two_branches", "one Conv reused in two branches", lambda: (models.TwoBranches().eval(), img())),
        Case("shared_parameter", "two Linears holding one Parameter",
             lambda: (models.SharedParam().eval(), torch.randn(2, 8))),
        Case("forward_hook", "forward hook scales a BN output x3", models.forward_hook_changes_output),
        Case("pre_hook", "forward pre-hook adds 1 to a conv input", models.forward_pre_hook_changes_input),
        Case("root_hook", "forward hook on the root (softmax)", models.root_hook),
        Case("torch_compile", "torch.compile(model) (OptimizedModule)", models.compiled),
        Case("data_parallel", "nn.DataParallel wrapper (CPU)", models.data_parallel),
        Case("jit_script", "torch.jit.script(model)", models.scripted),
        Case("jit_trace", "torch.jit.trace(model)", models.traced_jit),
        Case("lazy_uninitialised", "LazyConv2d/LazyLinear not yet run", models.lazy_uninit),
        Case("lazy_initialised", "LazyConv2d/LazyLinear after one run", models.lazy_init),
        Case("train_mode", "model in train mode (BN batch stats, dropout)", models.train_mode),
        Case("mixed_mode", "train mode with one BN in eval", models.mixed_mode),
        Case("functional_dropout_train", "F.dropout(training=self.training) in train mode",
             models.functional_dropout_train),
        Case("float64", "float64 model and input", models.float64),
        Case("bfloat16", "bfloat16 model and input", models.bfloat16),
        Case("float16", "float16 model and input", models.float16),
        Case("channels_last", "channels_last weights and input", models.channels_last),
        Case("frozen_params", "requires_grad=False on some params", models.frozen_params),
        Case("non_persistent_buffer", "non-persistent (1,C,1,1) buffer added to channels", models.non_persistent),
        Case("dict_input", "forward(batch: dict)", io_.dict_input, onnx=False),
        Case("dict_example_inputs", "example_inputs given as a dict", io_.dict_as_example_inputs, onnx=False),
        Case("nested_tuple_input", "forward((a, b))", io_.nested_tuple_input, onnx=False),
        Case("tensor_kwarg", "forward(x, scale) with a tensor scale", io_.kwargs_input),
        Case("none_argument", "forward(x, None, False)", io_.none_argument, onnx=False),
        Case("scalar_argument", "forward(x, 3.0)", io_.scalar_argument, onnx=False),
        Case("int_tokens", "integer token input (Embedding)", io_.int_tokens),
        Case("batch4_only", "view(4, -1) bakes batch 4", io_.batch4_only),
        Case("batch_mixing", "x - x.mean(0) across the batch", io_.batch_mixing),
        Case("dict_output", "returns a dict", io_.dict_output),
        Case("namedtuple_output", "returns a namedtuple", io_.namedtuple_output),
        Case("dataclass_output", "returns a dataclass", io_.dataclass_output, onnx=False),
        Case("in_place_ops", "relu_, +=, masked_fill_", ops.in_place_ops),
        Case("raw_functional", "F.conv2d/F.linear with raw Parameters", ops.raw_functional),
        Case("layer_scale", "(1,C,1,1) Parameter scaling a residual branch", ops.layer_scale),
        Case("channel_shuffle", "view/transpose channel shuffle", ops.channel_shuffle),
        Case("channel_shuffle_builtin", "F.channel_shuffle", ops.channel_shuffle_builtin),
        Case("cat_split", "cat then split at a different boundary", ops.cat_split),
        Case("cat_chunk", "cat then chunk", ops.cat_chunk),
        Case("view_flatten", "reshape(b, -1) into a Linear", ops.view_flatten),
        Case("view_scramble", "reshape mixing channels with spatial dims", ops.view_scramble),
        Case("permute_linear", "permute NCHW->NHWC then Linear", ops.permute_linear),
        Case("einsum", "einsum over channels with a raw Parameter", ops.einsum),
        Case("index_channels", "y[:, 2:5] channel slicing", ops.index_channels),
        Case("reduce_over_channels", "sum/max over the channel dim", ops.reduce_over_channels),
        Case("softmax_over_channels", "softmax over channels", ops.softmax_over_channels),
        Case("l2_normalize_channels", "F.normalize(dim=1)", ops.l2_normalize_channels),
        Case("group_norm", "GroupNorm(4, 16)", ops.group_norm),
        Case("instance_norm", "InstanceNorm2d(affine)", ops.instance_norm),
        Case("conv_transpose", "ConvTranspose2d", ops.conv_transpose),
        Case("lstm", "LSTM after a Linear", ops.lstm),
        Case("prelu", "PReLU(16)", ops.prelu),
        Case("raw_bias_vector", "raw (C,) Parameter added to a Linear output", ops.raw_bias_vector),
        Case("size_read_buffer", "buffer[: x.shape[1]] (size read)", ops.size_read_buffer),
        Case("sequential_subclass_lazy", "nn.Sequential subclass with a LazyLinear (uninitialised)",
             ops.sequential_subclass),
        Case("sequential_inplace_relu", "nn.Sequential with ReLU(inplace=True)", ops.sequential_plain),
        Case("budget_1", "budget 1.0", lambda: (convnet(), img()), budget=1.0),
        Case("budget_tiny", "budget 0.01", lambda: (convnet(), img()), budget=0.01),
        Case("budget_nan", "budget NaN", lambda: (convnet(), img()), budget=float("nan")),
        Case("budget_negative", "budget -0.5", lambda: (convnet(), img()), budget=-0.5),
        Case("budget_zero", "budget 0", lambda: (convnet(), img()), budget=0.0),
        Case("budget_above_1", "budget 1.5", lambda: (convnet(), img()), budget=1.5),
        Case("budget_string", "budget '0.5'", lambda: (convnet(), img()), budget="0.5"),
        Case("budget_bool", "budget True", lambda: (convnet(), img()), budget=True),
        Case("budget_tensor_1elem", "budget torch.tensor([0.5])", lambda: (convnet(), img()),
             budget=torch.tensor([0.5])),
        Case("nothing_prunable", "Conv(3,3) + ReLU: no prunable channel", ops.nothing_prunable),
        Case("no_parameters", "ReLU + Flatten only", ops.no_params),
        Case("empty_input_tuple", "example_inputs=()", lambda: (convnet(), ())),
        Case("wrong_input_shape", "example input with the wrong channel count", lambda: (convnet(), img(c=4))),
        Case("input_requires_grad", "example input with requires_grad=True",
             lambda: (convnet(), img().requires_grad_())),
    ]
    return out


def extra_cases():
    return [
        Case("torch_nn_utils_prune", "torch.nn.utils.prune.l1_unstructured (weight_orig * weight_mask pre-hook)",
             more.torch_prune_l1),
        Case("module_alias", "one module under two attribute names", lambda: (randomize_(more.Alias()).eval(), img())),
        Case("perm_buffer_index", "x[:, perm] with an index buffer", lambda: (more.PermIndex().eval(), img(h=4))),
        Case("conv1d_bn1d", "Conv1d + BatchNorm1d on (B, C, L)",
             lambda: (randomize_(more.Conv1dNet()).eval(), torch.randn(2, 4, 10))),
        Case("cat_batch_dim", "torch.cat of two branches along the batch dim", lambda: (more.CatBatch().eval(), img())),
        Case("depthwise_reflect", "depthwise dilated conv with padding_mode='reflect'",
             lambda: (more.Depthwise().eval(), img())),
        Case("unused_module_param", "a Linear and a Parameter never used in forward",
             lambda: (randomize_(more.Unused()).eval(), img())),
        Case("buffer_on_two_modules", "one buffer tensor registered on two modules",
             lambda: (more.BufferTied().eval(), img(h=4))),
    ]


def more_cases():
    return [
        Case("param_slice", "F.linear(y[:, :8], fc.weight[:, :8])", lambda: (more.ParamSlice().eval(), img(h=4))),
        Case("literal_channels", "adds torch.ones(b, 16, h, w) (literal 16)", lambda: (more.LiteralZeros().eval(), img(h=4))),
        Case("literal_view", "view(b, 16, -1) (literal 16)", lambda: (more.LiteralView().eval(), img(h=4))),
        Case("pixel_shuffle", "F.pixel_shuffle(., 2) after a conv", lambda: (more.PixelShuffle().eval(), img(h=4))),
        Case("weight_in_output", "returns (y, c1.weight.pow(2).sum())", lambda: (more.WeightOut().eval(), img(h=4))),
        Case("matmul_raw_params", "x @ W1.t() @ W2.t() with raw Parameters",
             lambda: (more.MatmulParam().eval(), torch.randn(3, 8))),
    ]


CASES = cases() + extra_cases() + more_cases()
