"""The catapult paper's predictions from λ₀: activations' c_act, the optimizer's stability factors, the phases."""
