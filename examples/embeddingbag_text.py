"""The text classifier of PyTorch's torchtext tutorial: ``nn.EmbeddingBag`` (mean) + a linear layer.

    lrphase probe examples/embeddingbag_text.py

``TextClassificationModel.forward(text, offsets)`` takes a batch as one flat tensor of token ids and
the offsets where each text starts, as the tutorial's ``collate_batch`` builds it in the
``DataLoader``; the loader yields ``((text, offsets), labels)``, so lrphase calls
``model(text, offsets)``. The data is SYNTHETIC: 512 texts of 5 to 40 token ids (already mapped
through a vocabulary) from a seeded generator, with 4 classes read off their first token.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader


class TextClassificationModel(nn.Module):
    def __init__(self, vocab_size, embed_dim, num_class):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean")
        self.fc = nn.Linear(embed_dim, num_class)
        self.init_weights()

    def init_weights(self):
        initrange = 0.5
        self.embedding.weight.data.uniform_(-initrange, initrange)
        self.fc.weight.data.uniform_(-initrange, initrange)
        self.fc.bias.data.zero_()

    def forward(self, text, offsets):
        embedded = self.embedding(text, offsets)
        return self.fc(embedded)


VOCAB_SIZE, EMSIZE, NUM_CLASS = 2000, 64, 4
model = TextClassificationModel(VOCAB_SIZE, EMSIZE, NUM_CLASS)

_gen = torch.Generator().manual_seed(0)
train_iter = []  # (label, token ids) pairs, as the tutorial's dataset after `vocab(tokenizer(text))`
for _ in range(512):
    tokens = torch.randint(0, VOCAB_SIZE, (int(torch.randint(5, 41, (), generator=_gen)),), generator=_gen).tolist()
    train_iter.append((tokens[0] % NUM_CLASS, tokens))


def collate_batch(batch):
    label_list, text_list, offsets = [], [], [0]
    for _label, _text in batch:
        label_list.append(_label)
        processed_text = torch.tensor(_text, dtype=torch.int64)
        text_list.append(processed_text)
        offsets.append(processed_text.size(0))
    label_list = torch.tensor(label_list, dtype=torch.int64)
    offsets = torch.tensor(offsets[:-1]).cumsum(dim=0)
    text_list = torch.cat(text_list)
    return (text_list, offsets), label_list


data = DataLoader(train_iter, batch_size=64, shuffle=True, collate_fn=collate_batch)

loss = "cross_entropy"
lr = 5.0  # the tutorial's LR with torch.optim.SGD
