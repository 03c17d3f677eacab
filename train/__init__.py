"""Training stage: SNN2ANN (AC2AS) with an integer SNN branch that runs Loihi's neuron."""
