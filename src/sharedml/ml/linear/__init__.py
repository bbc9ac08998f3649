"""Linear models on vertically split data: over HE (`hetero`) and over secret sharing (`ss`)."""
