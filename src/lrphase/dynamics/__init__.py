"""Short training runs from the model's initialization.

The runs themselves (:mod:`.runs`), their phase verdicts (:mod:`.verdict`) and the measured
divergence edge of minibatch training (:mod:`.stability`).
"""
