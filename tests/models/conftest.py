import torch

# Tiny models: one intra-op thread is much faster than two contending ones on a shared box.
torch.set_num_threads(1)
