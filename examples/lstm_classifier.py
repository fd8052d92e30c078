"""An LSTM sequence classifier: token embedding → one-layer ``nn.LSTM`` → linear head on the last hidden state.

    lrphase probe examples/lstm_classifier.py

The data is SYNTHETIC: 256 sequences of 24 token ids from a local, seeded ``torch.Generator``;
the class (4 of them) is the most frequent token's id modulo 4, so the task needs the whole
sequence. Cross-entropy, plain SGD.
"""

import torch
from torch import nn


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_classes: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, num_classes)

    def forward(self, tokens):
        _, (h_n, _) = self.lstm(self.embedding(tokens))
        return self.fc(h_n[-1])


VOCAB_SIZE, NUM_CLASSES = 500, 4
model = LSTMClassifier(VOCAB_SIZE, embed_dim=32, hidden_dim=64, num_classes=NUM_CLASSES)

_gen = torch.Generator().manual_seed(0)
_tokens = torch.randint(0, VOCAB_SIZE, (256, 24), generator=_gen)
_labels = torch.mode(_tokens, dim=1).values % NUM_CLASSES
data = (_tokens, _labels)

loss = "cross_entropy"
batch_size = 64
