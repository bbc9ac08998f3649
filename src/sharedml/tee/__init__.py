"""The TEE route: owners encrypt data to an attested enclave; only approved code decrypts, trains, predicts.

Modules, in the order data flows: `attestation` (quotes, simulated provider) and `gramine` (hardware
quotes, DCAP hook); `measurement`; `policy` (owner policy YAML); `envelope` (HPKE-style key wrap);
`sealed` (chunked encrypted files) and `storage`; `owner` (`encrypt_file`); `enclave` (runtime, key
ring sync) and `keyring`; `tables`, `models`, `train`, `release`; `predict`; `replicas` (health and
selection rules) and `cluster` (in-process cluster); `worker` (file-based worker); the network cluster:
`transport`, `node_config`, `node`, `node_api`, `membership`, `service` (replica process), `manager`,
`client` (SDK); `cli`.
Threat model and formats: docs/tee.md.
"""
