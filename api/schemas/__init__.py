"""Request and response models, one module per resource; requests and responses kept apart."""
