//! `componentize`: the one step between a Rust guest's core module and a policy component.
//!
//! ```text
//! componentize new  CORE.wasm -o COMPONENT.wasm   # like `wasm-tools component new`
//! componentize wit  COMPONENT.wasm                # like `wasm-tools component wit`
//! componentize check COMPONENT.wasm               # fit for clonekeeper's host?
//! ```
//!
//! It uses the same `wit-component` crate as `wasm-tools`, so the output is the same; it exists
//! because building this is quicker than `cargo install wasm-tools`. `check` catches the usual
//! mistakes early (WASI imports, no policy export); `clonekeeper policy check` remains the
//! authority.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use wit_component::{ComponentEncoder, DecodedWasm, WitPrinter};
use wit_parser::{Resolve, WorldId, WorldItem};

const USAGE: &str = "usage: componentize new CORE.wasm -o OUT.wasm | wit COMPONENT.wasm | check COMPONENT.wasm";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("componentize: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["new", input, "-o", output] => {
            let core = read(input)?;
            let component = ComponentEncoder::default()
                .module(&core)
                .with_context(|| {
                    format!("{input}: not a module with component-type metadata (built with wit-bindgen?)")
                })?
                .validate(true)
                .encode()
                .with_context(|| format!("{input}: encoding a component"))?;
            std::fs::write(output, &component).with_context(|| format!("writing {output}"))?;
            Ok(())
        }
        ["wit", input] => {
            let (resolve, world) = decode(input)?;
            let mut printer = WitPrinter::default();
            let pkg = resolve.worlds[world].package.context("decoded world has no package")?;
            printer.print(&resolve, pkg, &[])?;
            print!("{}", printer.output);
            Ok(())
        }
        ["check", input] => {
            let (resolve, world) = decode(input)?;
            let (imports, exports) = (names(&resolve, world, true), names(&resolve, world, false));
            println!("{input}: imports [{}] exports [{}]", imports.join(", "), exports.join(", "));
            let foreign: Vec<_> = imports.iter().filter(|name| !is_policy_import(name)).collect();
            if !foreign.is_empty() {
                bail!("{input} imports more than clonekeeper:policy/log: {foreign:?}");
            }
            if !exports.iter().any(|name| name.starts_with("clonekeeper:policy/")) {
                bail!("{input} exports no clonekeeper:policy interface");
            }
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

fn read(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {path}"))
}

fn decode(path: &str) -> Result<(Resolve, WorldId)> {
    match wit_component::decode(&read(path)?).with_context(|| format!("{path}: decoding"))? {
        DecodedWasm::Component(resolve, world) => Ok((resolve, world)),
        DecodedWasm::WitPackage(..) => bail!("{path} is a WIT package, not a component"),
    }
}

/// Imported or exported interface and function names, e.g. `clonekeeper:policy/log@0.1.0`.
fn names(resolve: &Resolve, world: WorldId, imports: bool) -> Vec<String> {
    let world = &resolve.worlds[world];
    let items = if imports { &world.imports } else { &world.exports };
    items
        .iter()
        .filter(|(_, item)| !matches!(item, WorldItem::Type { .. }))
        .map(|(key, _)| resolve.name_world_key(key))
        .collect()
}

/// `types` comes along with `log`'s users; anything else (WASI above all) is refused.
fn is_policy_import(name: &str) -> bool {
    ["clonekeeper:policy/log@", "clonekeeper:policy/types@"].iter().any(|prefix| name.starts_with(prefix))
}
