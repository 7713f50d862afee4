"""eMIGM tests run single-threaded: they must stay fast on two busy cores."""

import torch

torch.set_num_threads(1)
