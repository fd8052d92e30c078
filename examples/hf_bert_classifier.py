"""A BERT sentence classifier from Hugging Face transformers, random initialization.

    lrphase probe examples/hf_bert_classifier.py

``BertForSequenceClassification`` from a small ``BertConfig`` (nothing is downloaded), trained with
``torch.optim.SGD(momentum=0.9)`` on tokenized samples as a tokenizer and ``datasets`` give them: a
list of dicts ``{"input_ids", "attention_mask", "labels"}``, padded to a fixed length with pad id 0
and attention mask 0. No ``loss`` line: lrphase reads cross-entropy from the model type, as the
model computes it from ``labels``. The data is SYNTHETIC: token ids from a seeded generator; the
label is the first token's id modulo 3, so the task is learnable. Needs ``pip install 'lrphase[hf]'``.
"""

import torch
from transformers import BertConfig, BertForSequenceClassification

config = BertConfig(
    vocab_size=1000,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=64,
    num_labels=3,
)
model = BertForSequenceClassification(config)  # lrphase seeds the global RNG before importing this file

# What `dataset.map(lambda b: tokenizer(b["text"], padding="max_length", max_length=32))` yields.
_gen = torch.Generator().manual_seed(0)
_max_length = 32
data = []
for _ in range(64):
    length = int(torch.randint(8, _max_length + 1, (), generator=_gen))
    input_ids = torch.zeros(_max_length, dtype=torch.long)  # 0 is BERT's [PAD]
    input_ids[:length] = torch.randint(1, config.vocab_size, (length,), generator=_gen)
    attention_mask = (input_ids != 0).long()
    data.append({"input_ids": input_ids, "attention_mask": attention_mask, "labels": int(input_ids[0]) % config.num_labels})

optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
batch_size = 16
