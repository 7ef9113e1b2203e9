"""A person's judgement of each odd case (the last column of bench/results/odd_inputs.md)."""

FIXED = "FIXED"
NOTES = {
    "weight_norm": f"{FIXED}: parametrized weights are pruned as the weight they compute (baked on the private "
                   "copies; a warning names them); before, no group was built and the refusal named only the fc",
    "spectral_norm": f"{FIXED}: as weight_norm; slicing the original would change sigma (silently wrong)",
    "orthogonal": f"{FIXED}: as weight_norm (a slice of an orthogonal matrix is not the orthogonalised slice)",
    "custom_parametrization": f"{FIXED}: before, the originals were sliced: right here only because w*2 is "
                              "element-wise; w/||w|| gave a silently wrong model that the masked reference "
                              "could not see (tests/test_odd_models.py, independent oracle). torch.save of the "
                              "user's parametrized model fails in torch itself",
    "weight_norm_old": f"{FIXED}: refused by module with the way out (was torch's deepcopy error)",
    "spectral_norm_old": f"{FIXED}: was WRONG (pruned from the stale weight attribute, 0.81 rel. error vs the "
                         "model; the only signal was the generic 'hooks not carried' warning); now refused by "
                         "module with the way out",
    "torch_nn_utils_prune": f"{FIXED}: refused by module with the way out (prune.remove); was torch's deepcopy "
                            "error",
    "forward_hook": "warned by design: hooks are not carried unless keep_hooks=True (the warning names them); "
                    "the pruned model differs from the hooked model",
    "pre_hook": "warned by design (as forward_hook)",
    "root_hook": "warned by design (as forward_hook)",
    "torch_compile": "ok via torch.export (warning); the result is an OptimizedModule around the pruned class",
    "data_parallel": "ok via torch.export (warning); the result is a DataParallel around the pruned class",
    "jit_script": f"{FIXED}: refused up front (TorchScript: pass the nn.Module); was 'register_forward_pre_hook "
                  "is not supported on ScriptModules'",
    "jit_trace": f"{FIXED}: as jit_script",
    "lazy_uninitialised": f"{FIXED}: refused by module (run the model once); was a TraceError about "
                          "'uninitialized parameter in detach'",
    "sequential_subclass_lazy": f"{FIXED}: as lazy_uninitialised",
    "bfloat16": f"{FIXED} (oracle): masked reference built float32 masks, so it failed on half-precision models; "
                "pruning itself was right. ORT has no bf16 Conv: not graphprune's",
    "float16": f"{FIXED} (oracle): as bfloat16",
    "channels_last": f"{FIXED}: sliced conv weights lost channels_last (index_select returns contiguous); the "
                     "numbers were right",
    "in_place_ops": f"{FIXED}: comparisons (z > 2), masked_fill_ and logic ops had no channel rule, so "
                    "nothing was prunable; they are element-wise (the masked reference now masks a bool value "
                    "with a bool mask)",
    "dict_example_inputs": "clear: a dict is one positional argument; the error names node c1 and conv2d(dict)",
    "empty_input_tuple": "clear refusal",
    "wrong_input_shape": "clear refusal naming node c1",
    "channel_shuffle_builtin": "refused, clear (names torch.channel_shuffle); missing support (view/transpose "
                               "shuffle is supported)",
    "view_scramble": "refused, clear: a reshape that mixes channels with space cannot be pruned",
    "reduce_over_channels": "refused, clear (a sum over channels could be supported; max cannot)",
    "softmax_over_channels": "refused, correct (softmax of a zeroed channel is not zero)",
    "l2_normalize_channels": "refused, clear; missing support (zeroed channels do not change the norm)",
    "lstm": "refused, clear (no LSTM rule): missing support",
    "perm_buffer_index": "refused, clear (x[:, perm] with a tensor index): missing support",
    "buffer_on_two_modules": "refused; reason text is odd ('does not support pruning axis 1 of @c2.shift') "
                             "but nothing silent",
    "budget_tiny": "clear refusal (reachable 0.09 with the floors)",
    "nothing_prunable": "clear refusal ('model output' reason is terse)",
    "no_parameters": "clear refusal",
}
