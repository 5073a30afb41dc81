//! Turning a core WebAssembly module into a policy component (`clonekeeper policy
//! componentize`), the job of `wasm-tools component new`, with the contract built in.
//!
//! A module built with `wit-bindgen` carries its world in a custom section and is encoded as
//! it is. A module without one (hand-written WAT, other toolchains) gets the world named by
//! the caller from the contract embedded in this binary.

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

use super::bindings::WIT_TEXT;

/// The contract as it was at 0.2.0 (before `explain`) and at 0.2.1 (before `rank`): a module
/// whose names say `@0.2.0` or `@0.2.1` is given its world from that text, so modules written
/// against them still build and load.
const EARLIER_CONTRACTS: [(&[u8], &str); 2] =
    [(b"@0.2.0", include_str!("contract-0.2.0.wit")), (b"@0.2.1", include_str!("contract-0.2.1.wit"))];

/// The contract text for a module whose imports and exports name an earlier version, else the
/// current.
fn contract_for(names: &[u8]) -> &'static str {
    let names_version = |version: &[u8]| names.windows(version.len()).any(|w| w == version);
    EARLIER_CONTRACTS.iter().find(|(version, _)| names_version(version)).map_or(WIT_TEXT, |(_, text)| text)
}

/// The worlds of `wit/policy.wit`.
pub const WORLDS: &[&str] =
    &["prioritizer", "limiter", "retrier", "prioritizer-limiter", "prioritizer-retrier", "limiter-retrier", "full"];

/// Encodes `core` (binary or WAT) as a component. `world` is used when the module carries no
/// component-type section of its own.
pub fn componentize(core: &[u8], world: Option<&str>) -> Result<Vec<u8>, String> {
    let mut bytes = wat::parse_bytes(core).map_err(|e| format!("not a core module: {e}"))?.into_owned();
    let has_metadata = wasmparser_has_component_type(&bytes);
    if !has_metadata || world.is_some() {
        let world = world.unwrap_or("full");
        let mut resolve = Resolve::default();
        let package =
            resolve.push_str("policy.wit", contract_for(&bytes)).map_err(|e| format!("the contract: {e:#}"))?;
        let world_id = resolve
            .select_world(&[package], Some(world))
            .map_err(|_| format!("no world {world:?} in the contract (worlds: {})", WORLDS.join(", ")))?;
        wit_component::embed_component_metadata(&mut bytes, &resolve, world_id, StringEncoding::UTF8)
            .map_err(|e| format!("embedding world {world}: {e:#}"))?;
    }
    encode(&bytes)
}

/// Wraps a core module that carries its world into a validated component.
fn encode(core: &[u8]) -> Result<Vec<u8>, String> {
    ComponentEncoder::default()
        .module(core)
        .map_err(|e| format!("{e:#}"))?
        .validate(true)
        .encode()
        .map_err(|e| format!("{e:#}"))
}

/// Whether a core module has a `component-type*` custom section (wit-bindgen output).
fn wasmparser_has_component_type(bytes: &[u8]) -> bool {
    // The section name appears verbatim in the binary; a false positive only means the
    // caller's world is not embedded, and encoding then says what is missing.
    bytes.windows(b"component-type".len()).any(|w| w == b"component-type")
}

/// Builds a WIT world for tests and authoring tools from extra WIT text that may `include`
/// the contract's worlds (e.g. a world that also imports something forbidden).
pub fn componentize_with_wit(core: &[u8], extra_wit: &str, world: &str) -> Result<Vec<u8>, String> {
    let mut bytes = wat::parse_bytes(core).map_err(|e| format!("not a core module: {e}"))?.into_owned();
    let mut resolve = Resolve::default();
    resolve.push_str("policy.wit", contract_for(extra_wit.as_bytes())).map_err(|e| format!("the contract: {e:#}"))?;
    let package = resolve.push_str("extra.wit", extra_wit).map_err(|e| format!("extra WIT: {e:#}"))?;
    let world_id = resolve.select_world(&[package], Some(world)).map_err(|e| format!("{e:#}"))?;
    wit_component::embed_component_metadata(&mut bytes, &resolve, world_id, StringEncoding::UTF8)
        .map_err(|e| format!("{e:#}"))?;
    encode(&bytes)
}
