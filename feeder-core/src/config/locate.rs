//! Finds the line of a key inside one item of a top-level list, for errors that serde cannot
//! place (writer options are read after the document, from a generic map).

use std::collections::HashMap;

/// For each item of the block list under the top-level `section:` key, the line (1-based) of
/// each of its keys. Flow-style YAML yields nothing, and errors then carry no line.
pub fn item_key_lines(text: &str, section: &str) -> Vec<HashMap<String, usize>> {
    let mut items: Vec<HashMap<String, usize>> = Vec::new();
    let mut in_section = false;
    let mut dash_indent: Option<usize> = None;
    let mut key_indent: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let content = raw.trim_end();
        let trimmed = content.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = content.len() - trimmed.len();
        if indent == 0 && !trimmed.starts_with('-') {
            in_section = trimmed
                .strip_prefix(section)
                .is_some_and(|r| r.trim_start().starts_with(':'));
            key_indent = None;
            dash_indent = None;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some(after_dash) = trimmed.strip_prefix('-') {
            let after = after_dash.trim_start();
            if dash_indent.is_none_or(|d| d == indent) {
                dash_indent = Some(indent);
                key_indent = Some(indent + (trimmed.len() - after.len()));
                items.push(HashMap::new());
                if let (Some(item), Some(key)) = (items.last_mut(), key_of(after)) {
                    item.insert(key, line_no);
                }
                continue;
            }
        }
        if Some(indent) == key_indent {
            if let (Some(item), Some(key)) = (items.last_mut(), key_of(trimmed)) {
                item.insert(key, line_no);
            }
        }
    }
    items
}

fn key_of(s: &str) -> Option<String> {
    let (k, _) = s.split_once(':')?;
    let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
    (!k.is_empty() && !k.contains(' ')).then(|| k.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_per_item() {
        let text = "exchanges:\n  - name: x\nwriters:\n  - type: file\n    # note\n    path: /tmp\n    nested:\n      deep: 1\n  -   type: log\n    pth: 3\n";
        let items = item_key_lines(text, "writers");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["type"], 4);
        assert_eq!(items[0]["path"], 6);
        assert!(!items[0].contains_key("deep"));
        assert_eq!(items[1]["type"], 9);
        assert_eq!(
            items[1].get("pth"),
            None,
            "indent differs from the item's keys"
        );
    }
}
