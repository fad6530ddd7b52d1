//! The explorer's web assets, embedded at build time from `router/explorer/dist` (see
//! `build.rs`), so a `cargo build` alone yields a working explorer and nothing is fetched at
//! run time. Hashed files are immutable; `index.html` is rewritten per router (the explorer's
//! base path and the GraphQL endpoint) and revalidated on every load.

use std::io::Write;
use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/explorer_assets.rs"));

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub bytes: &'static [u8],
    gzip: OnceLock<Option<Vec<u8>>>,
}

/// Smaller than this is not worth a compressed copy.
const MIN_COMPRESSED_BYTES: usize = 1024;

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|(path, bytes)| Asset {
                path,
                bytes,
                gzip: OnceLock::new(),
            })
            .collect()
    })
}

/// The asset at `path` (relative to the explorer root, e.g. `assets/index-abc.js`).
pub fn get(path: &str) -> Option<&'static Asset> {
    assets().iter().find(|a| a.path == path)
}

/// Bytes added to the binary.
pub fn total_bytes() -> usize {
    FILES.iter().map(|(_, b)| b.len()).sum()
}

pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("ttf") => "font/ttf",
        _ => "application/octet-stream",
    }
}

fn compressible(path: &str) -> bool {
    matches!(
        path.rsplit_once('.').map(|(_, ext)| ext),
        Some("html" | "js" | "mjs" | "css" | "json" | "svg" | "ttf")
    )
}

/// gzip of `bytes` (best compression: computed once per asset).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

impl Asset {
    /// A gzip copy, when the type compresses and the copy is smaller.
    pub fn gzipped(&self) -> Option<&[u8]> {
        self.gzip
            .get_or_init(|| {
                if !compressible(self.path) || self.bytes.len() < MIN_COMPRESSED_BYTES {
                    return None;
                }
                let compressed = gzip(self.bytes);
                (compressed.len() < self.bytes.len()).then_some(compressed)
            })
            .as_deref()
    }

    /// Files named by content hash (everything under `assets/`) never change.
    pub fn immutable(&self) -> bool {
        self.path.starts_with("assets/")
    }
}

/// `index.html` for an explorer served at `base` (ends in `/`), sending GraphQL to `graphql`.
/// Both are validated config values (path characters only), so no escaping is needed beyond
/// refusing anything else.
pub fn index_html(base: &str, graphql: &str) -> Option<String> {
    let safe = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c))
    };
    if !safe(base) || !safe(graphql) {
        return None;
    }
    let index = std::str::from_utf8(get("index.html")?.bytes).ok()?;
    Some(index.replacen(
        "<head>",
        &format!(
            "<head>\n    <base href=\"{base}\" />\n    <meta name=\"switchyard-graphql\" content=\"{graphql}\" />"
        ),
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_embedded_and_typed() {
        let index = get("index.html").expect("index.html embedded");
        assert!(!index.immutable());
        let scripts: Vec<_> = assets()
            .iter()
            .filter(|a| a.path.ends_with(".js"))
            .collect();
        assert!(!scripts.is_empty());
        for asset in assets() {
            assert_ne!(
                content_type(asset.path),
                "application/octet-stream",
                "{}",
                asset.path
            );
        }
        // Every file index.html names is embedded.
        let text = std::str::from_utf8(index.bytes).unwrap();
        for part in text.split("./assets/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(get(&format!("assets/{name}")).is_some(), "{name}");
        }
    }

    #[test]
    fn index_names_its_base_and_endpoint() {
        let html = index_html("/explorer/", "/graphql").unwrap();
        assert!(html.contains("<base href=\"/explorer/\" />"), "{html}");
        assert!(html.contains("content=\"/graphql\""));
        assert!(index_html("/x\"><script>/", "/graphql").is_none());
    }

    #[test]
    fn scripts_compress() {
        let big = assets()
            .iter()
            .find(|a| a.path.ends_with(".js") && a.bytes.len() > 10_000)
            .unwrap();
        let gz = big.gzipped().unwrap();
        assert!(gz.len() < big.bytes.len() / 2);
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut decoded).unwrap();
        assert_eq!(decoded, big.bytes);
    }
}
