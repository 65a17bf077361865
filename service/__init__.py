"""mlplab: train, compare and serve MNIST multilayer perceptrons."""
