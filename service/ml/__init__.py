"""The training core: spec, data, both backends, the weight format, metrics, train()."""
