//! `nss url-categories [--json]`: the custom URL categories in the store, with URL counts.

use serde_json::json;

use crate::category_sync::store::{total_urls, Category, CategoryStore};
use crate::config::Settings;

/// Prints the categories: a table for a person, or with `json` the object fixed in the
/// contract. Needs neither token nor domain.
pub fn run(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let store = CategoryStore::in_state_dir(&settings.paths.state_dir);
    let categories = store.load()?;
    if json {
        println!("{}", to_json(settings, &categories));
    } else {
        print!("{}", table(settings, &store, &categories));
    }
    Ok(())
}

/// `{"limits": {...}, "total_urls": N, "categories": [{name, url_count, urls, updated, source}]}`
fn to_json(settings: &Settings, categories: &[Category]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = categories
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "url_count": c.urls.len(),
                "urls": c.urls,
                "updated": c.updated,
                "source": c.source,
            })
        })
        .collect();
    json!({
        "limits": {
            "max_custom_urls": settings.sync.max_custom_urls,
            "max_custom_categories": settings.sync.max_custom_categories,
        },
        "total_urls": total_urls(categories),
        "categories": list,
    })
}

/// A column of a name from the store: control characters shown escaped, so that a
/// strange name cannot garble the terminal.
fn printable(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.escape_debug().to_string()
    } else {
        text.to_string()
    }
}

fn table(settings: &Settings, store: &CategoryStore, categories: &[Category]) -> String {
    let mut text = String::new();
    if categories.is_empty() {
        text.push_str(&format!(
            "No custom URL categories yet. The sync fills {:?} (`nss sync-now` runs one).\n",
            settings.sync.category
        ));
    } else {
        let rows: Vec<[String; 4]> = categories
            .iter()
            .map(|c| {
                [
                    printable(&c.name),
                    c.urls.len().to_string(),
                    printable(&c.updated),
                    printable(&c.source),
                ]
            })
            .collect();
        let header = ["CATEGORY", "URLS", "UPDATED", "SOURCE"];
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(header.map(String::from)).chain(rows) {
            text.push_str(&format!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {}\n",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
            ));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "Custom URL categories: {} of {}; custom URLs: {} of {}\nStore: {}\n",
        categories.len(),
        settings.sync.max_custom_categories,
        total_urls(categories),
        settings.sync.max_custom_urls,
        store.path().display(),
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(name: &str, urls: &[&str], source: &str) -> Category {
        Category {
            name: name.to_string(),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            updated: "2026-01-01T00:00:00Z".to_string(),
            source: source.to_string(),
        }
    }

    #[test]
    fn json_has_the_contracts_shape() {
        let settings = Settings::default();
        let categories = [
            category(
                "MCAS Unsanctioned Apps",
                &[".a.example", ".b.example"],
                "mcas-sync",
            ),
            category("Finance", &["bank.example"], "admin"),
        ];
        let value = to_json(&settings, &categories);
        assert_eq!(
            value,
            json!({
                "limits": {"max_custom_urls": 25000, "max_custom_categories": 48},
                "total_urls": 3,
                "categories": [
                    {"name": "MCAS Unsanctioned Apps", "url_count": 2,
                     "urls": [".a.example", ".b.example"],
                     "updated": "2026-01-01T00:00:00Z", "source": "mcas-sync"},
                    {"name": "Finance", "url_count": 1, "urls": ["bank.example"],
                     "updated": "2026-01-01T00:00:00Z", "source": "admin"},
                ]
            })
        );
    }

    #[test]
    fn the_table_aligns_and_totals() {
        let settings = Settings::default();
        let store = CategoryStore::new("/var/lib/nss-agent/url-categories.json");
        let categories = [
            category("MCAS Unsanctioned Apps", &[".a.example"; 12], "mcas-sync"),
            category("Fin\nance", &["bank.example"], "admin"),
        ];
        let text = table(&settings, &store, &categories);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "CATEGORY                URLS  UPDATED               SOURCE"
        );
        assert_eq!(
            lines[1],
            "MCAS Unsanctioned Apps    12  2026-01-01T00:00:00Z  mcas-sync"
        );
        assert!(lines[2].starts_with("Fin\\nance "), "{text}");
        assert!(text.contains("2 of 48; custom URLs: 13 of 25000"), "{text}");
    }
}
