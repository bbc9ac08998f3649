"""Machine-learning cores that the federated protocols build on (plaintext algorithms, no networking)."""
