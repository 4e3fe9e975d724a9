"""Training on top of ``retriever``: losses, training data, the trainer and the ``retriever train`` command."""
