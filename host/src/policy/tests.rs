//! Tests of the policy engine with real wasmtime components.
