//! The page shell's store-wide parts (stylesheets per region, navigation, CSP hashes of the
//! inline style and script), built once per published snapshot.

use std::fmt::Write as _;

use super::escape_html;
use crate::store::model::PageVersion;

/// The parts of the page shell that depend only on the store's published state, built once per
/// snapshot: every page of every shopper carries the same stylesheet and navigation, and
/// rebuilding them (theme tokens resolved into a map, 9 KB of CSS copied through `format!`)
/// was a visible share of a render.
#[derive(Debug, Default)]
pub struct Chrome {
    /// `<style>` with the theme's tokens and the stylesheets, for pages without a region override.
    style: String,
    /// The same for each region that overrides tokens.
    style_by_region: std::collections::HashMap<String, String>,
    /// Links to the store's own pages.
    pub(super) nav: String,
    /// Content-Security-Policy sources (`'sha256-…'`) of the inline `<style>`s (every region's)
    /// and `<script>`s (the shell's, the analytics snippet's) this store's pages can carry.
    pub style_hashes: Vec<String>,
    pub script_hashes: Vec<String>,
    /// The store loads the analytics snippet's script and sends it data (`http::headers`).
    pub analytics: bool,
    /// The policy built from the above, kept by the HTTP layer once per snapshot.
    pub policy: std::sync::OnceLock<String>,
}

/// A CSP hash source of an inline element's text.
pub fn csp_hash(text: &str) -> String {
    use base64::Engine as _;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The analytics snippet's script (Microsoft Clarity), for a validated project id.
pub(super) fn analytics_script(id: &str) -> String {
    format!(
        "(function(c,l,a,r,i,t,y){{c[a]=c[a]||function(){{(c[a].q=c[a].q||[]).push(arguments)}};t=l.createElement(r);t.async=1;t.src=\"https://www.clarity.ms/tag/\"+i;y=l.getElementsByTagName(r)[0];y.parentNode.insertBefore(t,y);}})(window,document,\"clarity\",\"script\",\"{id}\");"
    )
}

impl Chrome {
    pub fn build(
        theme: &crate::store::model::Theme,
        pages: &std::collections::HashMap<String, PageVersion>,
        analytics_id: Option<&str>,
    ) -> Chrome {
        let mut style_hashes = Vec::new();
        let mut style = |region: Option<&str>| {
            let mut css_vars = String::new();
            for (k, v) in theme.resolve(region) {
                // Tokens were validated on save: no characters that could leave the declaration.
                let _ = write!(css_vars, "--v-{k}:{v};");
            }
            let css = format!(":root{{{css_vars}}}\n{SHELL_CSS}\n{BLOCKS_CSS}");
            style_hashes.push(csp_hash(&css));
            format!("<style>{css}</style>\n")
        };
        let mut nav = String::new();
        let mut slugs: Vec<&str> = pages
            .keys()
            .map(String::as_str)
            .filter(|p| !["home", "product", "post", "blog", "cart", "search", "order"].contains(p))
            .collect();
        slugs.sort_unstable();
        for slug in slugs {
            let _ = write!(nav, "<a href=\"/pages/{}\">{}</a>", escape_html(slug), escape_html(&pages[slug].title));
        }
        let default_style = style(None);
        let style_by_region = theme.regions.keys().map(|r| (r.clone(), style(Some(r)))).collect();
        let mut script_hashes = vec![shell_script_hash().to_string()];
        script_hashes.extend(analytics_id.map(|id| csp_hash(&analytics_script(id))));
        Chrome {
            style: default_style,
            style_by_region,
            nav,
            style_hashes,
            script_hashes,
            analytics: analytics_id.is_some(),
            policy: Default::default(),
        }
    }

    pub(super) fn style(&self, region: Option<&str>) -> &str {
        region.and_then(|r| self.style_by_region.get(r)).unwrap_or(&self.style)
    }
}

/// The stylesheets of the page shell and of the default block library, inlined into every page.
pub(super) const SHELL_CSS: &str = include_str!("../../actors/shell.css");
pub(super) const BLOCKS_CSS: &str = include_str!("../../actors/blocks/blocks.css");
/// Progressive enhancement only: forms work without it.
pub(super) const SHELL_JS: &str = include_str!("../../actors/shell.js");

fn shell_script_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| csp_hash(SHELL_JS))
}
