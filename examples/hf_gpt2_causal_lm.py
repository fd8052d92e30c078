"""A small GPT-2 language model from Hugging Face transformers, random initialization.

    lrphase probe examples/hf_gpt2_causal_lm.py

``GPT2LMHeadModel`` from a small ``GPT2Config`` (nothing is downloaded) on a mapping
``{"input_ids": …, "labels": …}`` as ``DataCollatorForLanguageModeling(mlm=False)`` builds it: the
labels are the input ids with the padding positions set to -100, so the loss leaves them out. No
``loss`` line: lrphase reads next-token cross-entropy (``causal_lm``) from the model type, the loss
the model computes from ``labels`` (shifted one token). The data is SYNTHETIC: right-padded
sequences of random token ids from a seeded generator. Needs ``pip install 'lrphase[hf]'``.
"""

import torch
from transformers import GPT2Config, GPT2LMHeadModel

config = GPT2Config(
    vocab_size=128,
    n_positions=32,
    n_embd=32,
    n_layer=2,
    n_head=2,
    bos_token_id=0,
    eos_token_id=0,
)
model = GPT2LMHeadModel(config)  # lrphase seeds the global RNG before importing this file
pad_token_id = config.eos_token_id  # GPT-2 has no pad token: pad with end-of-text, as usual

_gen = torch.Generator().manual_seed(0)
_sequences, _length = 64, 16
input_ids = torch.full((_sequences, _length), pad_token_id, dtype=torch.long)
for row in input_ids:
    n = int(torch.randint(8, _length + 1, (), generator=_gen))
    row[:n] = torch.randint(1, config.vocab_size, (n,), generator=_gen)
labels = input_ids.clone()
labels[input_ids == pad_token_id] = -100  # what DataCollatorForLanguageModeling does
data = {"input_ids": input_ids, "labels": labels}

batch_size = 8
