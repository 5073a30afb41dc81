//! Headless Chromium as the tests' eye: renders a local HTML file to a PNG screenshot and
//! counts the pixels of a colour, so a test checks what an operator would see, not the markup.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{kill_process_group, tail, POLL};

/// How long one screenshot may take: Chromium starts in about a second; this bounds a hang.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(90);

/// The Chromium binary: `CLONEKEEPER_CHROMIUM`, else `/usr/bin/chromium`, else `chromium` on
/// `PATH`. Panics saying how to install it when there is none.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CLONEKEEPER_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CLONEKEEPER_CHROMIUM={} is not a file (unset it to use the Chromium scripts/test.sh installs)",
            path.display()
        );
        return path;
    }
    let installed = PathBuf::from("/usr/bin/chromium");
    if installed.is_file() {
        return installed;
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("chromium")).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "Chromium not found (CLONEKEEPER_CHROMIUM, /usr/bin/chromium, chromium on PATH): \
                 scripts/test.sh installs it (Debian package `chromium`)"
            )
        })
}

/// Renders `html` (a local file) in headless Chromium with a 1400×1800 window and writes a
/// screenshot to `png`. Panics naming what failed, with the end of Chromium's output, when
/// Chromium fails or takes longer than [`SCREENSHOT_TIMEOUT`] (then it is killed).
pub fn screenshot(html: &Path, png: &Path) {
    let html = html.canonicalize().unwrap_or_else(|e| panic!("the page {}: {e}", html.display()));
    let work = tempfile::tempdir().expect("a profile folder for Chromium");
    let log = work.path().join("chromium.log");
    let log_file = std::fs::File::create(&log).expect("creating Chromium's log");
    let _ = std::fs::remove_file(png);
    let binary = chromium();
    let mut command = Command::new(&binary);
    command
        // As root (the suite's containers), Chromium's sandbox cannot start.
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        // Small /dev/shm in containers; colours as written, not through a display profile.
        .args(["--disable-dev-shm-usage", "--force-color-profile=srgb", "--window-size=1400,1800"])
        .arg(format!("--user-data-dir={}", work.path().join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("sharing Chromium's log"))
        .stderr(log_file);
    // Its own process group, so a timeout kills its renderer and GPU processes too.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let deadline = Instant::now() + SCREENSHOT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                kill_process_group(&mut child);
                panic!(
                    "Chromium took over {SCREENSHOT_TIMEOUT:?} to screenshot {}, killed; its output:\n{}",
                    html.display(),
                    tail(&log, 30)
                );
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => panic!("waiting for Chromium: {e}"),
        }
    };
    assert!(
        status.success() && png.is_file(),
        "Chromium ({status}) wrote no screenshot of {} to {}; its output:\n{}",
        html.display(),
        png.display(),
        tail(&log, 30)
    );
}

/// A decoded screenshot: 8-bit RGB pixels, row by row.
pub struct Image {
    pub width: u32,
    pub height: u32,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    /// Decodes the PNG at `path` (any colour type and depth, expanded to 8-bit RGB).
    pub fn open(path: &Path) -> Image {
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()));
        let size = reader.output_buffer_size().unwrap_or_else(|| panic!("{}: an image too large", path.display()));
        let mut buffer = vec![0; size];
        let frame = reader.next_frame(&mut buffer).unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()));
        let bytes = &buffer[..frame.buffer_size()];
        let rgb = match frame.color_type {
            png::ColorType::Rgb => bytes.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(),
            png::ColorType::Rgba => bytes.chunks_exact(4).map(|p| [p[0], p[1], p[2]]).collect(),
            png::ColorType::Grayscale => bytes.iter().map(|&g| [g, g, g]).collect(),
            png::ColorType::GrayscaleAlpha => bytes.chunks_exact(2).map(|p| [p[0], p[0], p[0]]).collect(),
            png::ColorType::Indexed => panic!("{}: palette left unexpanded", path.display()),
        };
        Image { width: frame.width, height: frame.height, rgb }
    }

    /// How many pixels are within `tolerance` of `hex` (`#rrggbb`) in every channel.
    pub fn count_colour(&self, hex: &str, tolerance: u8) -> usize {
        let want = parse_hex(hex);
        self.rgb.iter().filter(|p| p.iter().zip(want).all(|(have, want)| have.abs_diff(want) <= tolerance)).count()
    }
}

/// `#rrggbb` as bytes.
fn parse_hex(hex: &str) -> [u8; 3] {
    let digits = hex.strip_prefix('#').filter(|d| d.len() == 6).unwrap_or_else(|| panic!("{hex:?} is not #rrggbb"));
    let channel = |i: usize| u8::from_str_radix(&digits[i..i + 2], 16).unwrap_or_else(|e| panic!("{hex:?}: {e}"));
    [channel(0), channel(2), channel(4)]
}
