"""Shared settings for these tests.

NOTE: one intra-op thread. CI and dev machines have 2 cores that other jobs
share; with torch's default of one thread per core, oversubscription made
small forwards here 20× slower (DenseNet-40: 3.3 s vs 0.14 s).
"""
import torch

torch.set_num_threads(1)
