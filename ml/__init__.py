"""ML: features, training, evaluation, registry, drift, promotion and serving."""
