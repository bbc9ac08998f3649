"""The TEE route: owners encrypt data to an attested enclave; only approved code decrypts, trains, predicts.

Modules, in the order data flows: `quotes` (what a quote claims, what a verifier trusts), `attestation`
(verification, simulated provider) and `gramine` (hardware quotes, DCAP hook); `measurement`;
`owner_policy` (owner policy YAML); `envelope` (HPKE-style key wrap); `sealed` (chunked encrypted files)
and `storage`; `owner` (`encrypt_file`); `enclave` (runtime, key ring sync) and `keyring`; `tables`,
`models`, `train`, `release`; `predict`; `cluster` (in-process cluster, on `net.replicas`' health and
selection rules); `worker` (file-based worker); the network cluster: `tls_options`, `replica_config`,
`enclave_host`, `enclave_api`, `membership`, `service` (replica process), `manager` (on
`net.replica_registry`), `client` (SDK); `cli`.
Threat model and formats: docs/tee.md.
"""
