//! Whether a module serves or shadows: the `[clonekeeper]` table of its `NAME.toml`, which
//! the host reads and removes before the module's `init` sees the rest.
//!
//! ```toml
//! [clonekeeper]
//! mode = "shadow"          # or "serving", the default
//! shadows = ["prioritize"] # the interfaces it shadows; default: every one it implements
//! ```
//!
//! A shadow answers beside the serving module (the same queued repos, the same code host
//! loads, the same failures), off the dispatch path, and how its answers differ is reported;
//! promoting it is an edit of the file (or dropping the table), which hot reload picks up.

use super::module::Interface;

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

/// What `NAME.toml` says of the module's part, and the config its `init` gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub mode: Mode,
    /// The interfaces a shadow answers; empty: every decision interface it implements.
    pub shadows: Vec<Interface>,
    pub config: String,
}

/// Splits `NAME.toml`'s text into the module's part and the config its `init` gets. Text
/// without a `[clonekeeper]` table (or not TOML at all, which `init` may still accept) is
/// passed on unchanged.
pub fn split(text: &str) -> Result<Split, String> {
    let unchanged = || Ok(Split { config: text.to_string(), ..Split::default() });
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return unchanged();
    };
    let Some(ours) = table.remove(TABLE) else {
        return unchanged();
    };
    let toml::Value::Table(ours) = ours else {
        return Err(format!("[{TABLE}]: expected a table (mode, shadows)"));
    };
    let mut split = Split::default();
    for (key, value) in &ours {
        match (key.as_str(), value) {
            ("mode", toml::Value::String(mode)) if mode == "serving" => split.mode = Mode::Serving,
            ("mode", toml::Value::String(mode)) if mode == "shadow" => split.mode = Mode::Shadow,
            ("mode", _) => return Err(format!("[{TABLE}] mode: \"serving\" or \"shadow\", got {value}")),
            ("shadows", toml::Value::String(one)) => split.shadows = vec![interface(one)?],
            ("shadows", toml::Value::Array(list)) => {
                split.shadows = list
                    .iter()
                    .map(|v| v.as_str().ok_or_else(|| format!("[{TABLE}] shadows: names, got {v}")).and_then(interface))
                    .collect::<Result<_, _>>()?;
            }
            ("shadows", _) => {
                return Err(format!("[{TABLE}] shadows: an interface name or a list of them, got {value}"))
            }
            (other, _) => return Err(format!("[{TABLE}]: unknown key {other:?} (known: mode, shadows)")),
        }
    }
    split.config = if table.is_empty() { String::new() } else { toml::to_string(&table).map_err(|e| e.to_string())? };
    Ok(split)
}

fn interface(name: &str) -> Result<Interface, String> {
    Interface::DECISIONS.into_iter().find(|i| i.as_str() == name).ok_or_else(|| {
        format!("[{TABLE}] shadows: {name:?} is not one of \"prioritize\", \"rate-limits\", \"reenqueue\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_the_table_passes_unchanged_and_serves() {
        for text in ["", "stars_weight = 2.0\n# a comment\n", "not toml at all ["] {
            assert_eq!(split(text), Ok(Split { config: text.to_string(), ..Split::default() }));
        }
    }

    #[test]
    fn the_table_sets_the_mode_and_is_removed_from_what_init_gets() {
        let split_text =
            split("stars_weight = 2.0\n[clonekeeper]\nmode = \"shadow\"\nshadows = \"prioritize\"\n").expect("ok");
        assert_eq!((split_text.mode, split_text.shadows), (Mode::Shadow, vec![Interface::Prioritize]));
        let rest: toml::Table = split_text.config.parse().expect("toml");
        assert_eq!(rest, "stars_weight = 2.0".parse::<toml::Table>().expect("toml"));
        let both = split("[clonekeeper]\nmode = \"shadow\"\nshadows = [\"rate-limits\", \"reenqueue\"]\n").expect("ok");
        assert_eq!(both.shadows, vec![Interface::RateLimits, Interface::Reenqueue]);
        assert_eq!(
            split("[clonekeeper]\nmode = \"serving\"\n").map(|s| (s.mode, s.config)),
            Ok((Mode::Serving, String::new()))
        );
    }

    #[test]
    fn a_wrong_table_is_refused_naming_the_key() {
        for (text, says) in [
            ("[clonekeeper]\nmode = \"loud\"\n", "mode"),
            ("[clonekeeper]\nshadows = \"lifecycle\"\n", "not one of"),
            ("[clonekeeper]\nshadows = [1]\n", "names"),
            ("[clonekeeper]\nmood = \"shadow\"\n", "unknown key \"mood\""),
            ("clonekeeper = 3\n", "expected a table"),
        ] {
            let error = split(text).expect_err(text);
            assert!(error.contains(says), "{error:?} does not say {says:?}");
        }
    }
}
