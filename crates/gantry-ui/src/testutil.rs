//! Checks shared by the tests: the SVG is well-formed and CSP-clean.

#![allow(clippy::unwrap_used)]

/// Panics unless `svg` is one well-formed element tree: tags balance,
/// attributes are quoted, text holds no raw `<`, every `&` starts an entity,
/// and there is no `style`, `<script` or event-handler attribute.
pub(crate) fn assert_clean_svg(svg: &str) {
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 "),
        "{svg}"
    );
    assert!(svg.ends_with("</svg>"), "{svg}");
    let lower = svg.to_ascii_lowercase();
    assert!(!lower.contains("style="), "style attribute in {svg}");
    assert!(!lower.contains("<style"), "style element in {svg}");
    assert!(!lower.contains("<script"), "script in {svg}");
    assert!(!lower.contains("javascript:"), "javascript: in {svg}");
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let gt = rest[lt..].find('>').map(|g| lt + g).unwrap();
        let tag = &rest[lt + 1..gt];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name), "mismatched </{name}> in {svg}");
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = tag.split(' ').next().unwrap();
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "tag {tag}"
            );
            check_attributes(&tag[name.len()..]);
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[gt + 1..];
        if stack.is_empty() {
            assert!(rest.is_empty(), "content after the root: {rest}");
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
}

fn check_text(text: &str) {
    assert!(!text.contains('>'), "raw > in text {text:?}");
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let after = &rest[amp..];
        let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
            .iter()
            .any(|e| after.starts_with(e));
        assert!(ok, "bare & in {text:?}");
        rest = &rest[amp + 1..];
    }
}

fn check_attributes(mut attrs: &str) {
    let mut seen = Vec::new();
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            return;
        }
        let eq = attrs.find('=').unwrap();
        let name = &attrs[..eq];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'),
            "attribute {name:?}"
        );
        assert!(!seen.contains(&name), "duplicate attribute {name}");
        assert!(
            !name.to_ascii_lowercase().starts_with("on"),
            "event handler {name}"
        );
        seen.push(name);
        assert_eq!(&attrs[eq + 1..eq + 2], "\"", "unquoted {name}");
        let end = attrs[eq + 2..].find('"').unwrap() + eq + 2;
        let value = &attrs[eq + 2..end];
        assert!(!value.contains('<'), "< in attribute {name}");
        check_text(value);
        attrs = &attrs[end + 1..];
    }
}
