//! Whether a module serves or shadows: the `[clonekeeper]` table of its `NAME.toml`, which
//! the host reads and removes before the module's `init` sees the rest.
//!
//! ```toml
//! [clonekeeper]
//! mode = "shadow"         # or "serving", the default
//! shadows = "prioritize"  # the interface it shadows (the only one shadowed for now)
//! ```
//!
//! A shadow runs beside the serving module on the same queued repos, off the dispatch path,
//! and its agreement with the serving order is reported; promoting it is an edit of the file
//! (or dropping the table), which hot reload picks up.

/// How a loaded module takes part.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Decides (first by file name among those implementing an interface).
    #[default]
    Serving,
    /// Answers `prioritize` beside the serving module; never decides.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Serving => "serving",
            Mode::Shadow => "shadow",
        }
    }
}

/// The host's table in `NAME.toml`.
const TABLE: &str = "clonekeeper";

/// Splits `NAME.toml`'s text into the module's mode and the config its `init` gets. Text
/// without a `[clonekeeper]` table (or not TOML at all, which `init` may still accept) is
/// passed on unchanged.
pub fn split(text: &str) -> Result<(Mode, String), String> {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Ok((Mode::Serving, text.to_string()));
    };
    let Some(ours) = table.remove(TABLE) else {
        return Ok((Mode::Serving, text.to_string()));
    };
    let toml::Value::Table(ours) = ours else {
        return Err(format!("[{TABLE}]: expected a table (mode, shadows)"));
    };
    let mut mode = Mode::Serving;
    for (key, value) in &ours {
        match (key.as_str(), value.as_str()) {
            ("mode", Some("serving")) => mode = Mode::Serving,
            ("mode", Some("shadow")) => mode = Mode::Shadow,
            ("mode", _) => return Err(format!("[{TABLE}] mode: \"serving\" or \"shadow\", got {value}")),
            ("shadows", Some("prioritize")) => {}
            ("shadows", _) => {
                return Err(format!(
                    "[{TABLE}] shadows: only \"prioritize\" can be shadowed (rate-limits and reenqueue \
                     shadows are not built yet), got {value}"
                ))
            }
            (other, _) => return Err(format!("[{TABLE}]: unknown key {other:?} (known: mode, shadows)")),
        }
    }
    let rest = if table.is_empty() { String::new() } else { toml::to_string(&table).map_err(|e| e.to_string())? };
    Ok((mode, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_the_table_passes_unchanged_and_serves() {
        for text in ["", "stars_weight = 2.0\n# a comment\n", "not toml at all ["] {
            assert_eq!(split(text), Ok((Mode::Serving, text.to_string())));
        }
    }

    #[test]
    fn the_table_sets_the_mode_and_is_removed_from_what_init_gets() {
        let (mode, rest) =
            split("stars_weight = 2.0\n[clonekeeper]\nmode = \"shadow\"\nshadows = \"prioritize\"\n").expect("ok");
        assert_eq!(mode, Mode::Shadow);
        assert_eq!(
            rest.parse::<toml::Table>().expect("toml"),
            "stars_weight = 2.0".parse::<toml::Table>().expect("toml")
        );
        assert_eq!(split("[clonekeeper]\nmode = \"serving\"\n"), Ok((Mode::Serving, String::new())));
    }

    #[test]
    fn a_wrong_table_is_refused_naming_the_key() {
        for (text, says) in [
            ("[clonekeeper]\nmode = \"loud\"\n", "mode"),
            ("[clonekeeper]\nshadows = \"reenqueue\"\n", "only \"prioritize\""),
            ("[clonekeeper]\nmood = \"shadow\"\n", "unknown key \"mood\""),
            ("clonekeeper = 3\n", "expected a table"),
        ] {
            let error = split(text).expect_err(text);
            assert!(error.contains(says), "{error:?} does not say {says:?}");
        }
    }
}
