//! The XML of Azure's Put Block List request and of its Get Block List answer.
//!
//! Both documents are tiny and flat, so a strict hand-written reader is enough; being
//! strict is the point: a client that sends malformed XML must get the 400 that Azure
//! would answer.

/// One entry of a Put Block List body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockRef {
    /// `<Latest>`: the uncommitted block of that id if there is one, else the committed one.
    Latest(String),
    /// `<Committed>`: a block of the blob's current committed list.
    Committed(String),
    /// `<Uncommitted>`: a block uploaded with Put Block since the last commit.
    Uncommitted(String),
}

impl BlockRef {
    /// The base64 block id.
    pub(crate) fn id(&self) -> &str {
        match self {
            BlockRef::Latest(id) | BlockRef::Committed(id) | BlockRef::Uncommitted(id) => id,
        }
    }
}

/// A cursor over the document text.
struct Reader<'a> {
    rest: &'a str,
}

impl<'a> Reader<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// Skips `<?...?>` declarations and `<!--...-->` comments (and whitespace around them).
    fn skip_misc(&mut self) -> Result<(), String> {
        loop {
            self.skip_ws();
            if let Some(r) = self.rest.strip_prefix("<?") {
                let end = r.find("?>").ok_or("unterminated XML declaration")?;
                self.rest = &r[end + 2..];
            } else if let Some(r) = self.rest.strip_prefix("<!--") {
                let end = r.find("-->").ok_or("unterminated XML comment")?;
                self.rest = &r[end + 3..];
            } else {
                return Ok(());
            }
        }
    }

    /// Reads a tag `<name ...>`, `</name>` or `<name/>`; returns (name, closing, empty).
    fn tag(&mut self) -> Result<(&'a str, bool, bool), String> {
        let r = self
            .rest
            .strip_prefix('<')
            .ok_or_else(|| format!("expected a tag at {:?}", preview(self.rest)))?;
        let end = r.find('>').ok_or("unterminated tag")?;
        let mut inner = &r[..end];
        self.rest = &r[end + 1..];
        let closing = inner.starts_with('/');
        if closing {
            inner = &inner[1..];
        }
        let empty = inner.ends_with('/');
        if empty {
            inner = &inner[..inner.len() - 1];
        }
        // Attributes (e.g. an xmlns) are allowed and ignored.
        let name = inner.split_whitespace().next().unwrap_or("");
        if name.is_empty() || (closing && empty) {
            return Err(format!("malformed tag <{}>", &r[..end]));
        }
        Ok((name, closing, empty))
    }

    /// Reads character data up to the next `<`.
    fn text(&mut self) -> Result<String, String> {
        let end = self.rest.find('<').ok_or("unterminated element")?;
        let raw = &self.rest[..end];
        self.rest = &self.rest[end..];
        unescape(raw)
    }
}

fn preview(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let r = &rest[i..];
        let end = r.find(';').ok_or("unterminated entity")?;
        let entity = &r[1..end];
        let ch = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{entity};"))?
            }
        };
        out.push(ch);
        rest = &r[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses a Put Block List body: `<?xml ...?><BlockList><Latest>id</Latest>...</BlockList>`.
pub(crate) fn parse_block_list(xml: &str) -> Result<Vec<BlockRef>, String> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut rd = Reader { rest: xml };
    rd.skip_misc()?;
    let (name, closing, empty) = rd.tag()?;
    if name != "BlockList" || closing {
        return Err(format!("the root element must be BlockList, not {name}"));
    }
    let mut blocks = Vec::new();
    if !empty {
        loop {
            rd.skip_misc()?;
            let (name, closing, empty) = rd.tag()?;
            if closing {
                if name != "BlockList" {
                    return Err(format!("unexpected </{name}>"));
                }
                break;
            }
            let make: fn(String) -> BlockRef = match name {
                "Latest" => BlockRef::Latest,
                "Committed" => BlockRef::Committed,
                "Uncommitted" => BlockRef::Uncommitted,
                _ => return Err(format!("unexpected element <{name}> in BlockList")),
            };
            if empty {
                return Err(format!("empty block id in <{name}/>"));
            }
            let id = rd.text()?.trim().to_string();
            let (end, closing, _) = rd.tag()?;
            if !closing || end != name {
                return Err(format!(
                    "<{name}> closed by <{}{end}>",
                    if closing { "/" } else { "" }
                ));
            }
            if id.is_empty() {
                return Err(format!("empty block id in <{name}>"));
            }
            blocks.push(make(id));
        }
    }
    rd.skip_misc()?;
    if !rd.rest.is_empty() {
        return Err(format!(
            "content after </BlockList>: {:?}",
            preview(rd.rest)
        ));
    }
    Ok(blocks)
}

/// Counts the `<Block>` elements inside `<CommittedBlocks>` of a Get Block List answer.
pub(crate) fn count_committed_blocks(xml: &str) -> u32 {
    let Some(start) = xml.find("<CommittedBlocks") else {
        return 0;
    };
    let section = &xml[start..];
    let section = match section.find("</CommittedBlocks>") {
        Some(end) => &section[..end],
        // `<CommittedBlocks />` (empty) or a truncated document.
        None => return 0,
    };
    section.matches("<Block>").count() as u32
}

/// The Put Block List body committing `ids` as `<Latest>` blocks, in that order.
pub fn block_list_xml<S: AsRef<str>>(ids: &[S]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for id in ids {
        xml.push_str("<Latest>");
        xml.push_str(id.as_ref());
        xml.push_str("</Latest>");
    }
    xml.push_str("</BlockList>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_azure_example() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<BlockList>
  <Committed>first-base64-encoded-block-id</Committed>
  <Uncommitted>second-base64-encoded-block-id</Uncommitted>
  <Latest>third-base64-encoded-block-id</Latest>
</BlockList>"#;
        assert_eq!(
            parse_block_list(xml).unwrap(),
            vec![
                BlockRef::Committed("first-base64-encoded-block-id".into()),
                BlockRef::Uncommitted("second-base64-encoded-block-id".into()),
                BlockRef::Latest("third-base64-encoded-block-id".into()),
            ]
        );
    }

    #[test]
    fn parses_compact_bom_and_entities() {
        let xml = "\u{feff}<?xml version=\"1.0\"?><BlockList><Latest>QUE=</Latest><!-- c --><Latest> QkI= </Latest></BlockList>\n";
        let b = parse_block_list(xml).unwrap();
        assert_eq!(
            b.iter().map(BlockRef::id).collect::<Vec<_>>(),
            ["QUE=", "QkI="]
        );
        let b = parse_block_list("<BlockList><Latest>a&amp;b&#x3D;</Latest></BlockList>").unwrap();
        assert_eq!(b[0].id(), "a&b=");
        assert!(parse_block_list("<BlockList/>").unwrap().is_empty());
        assert!(parse_block_list("<BlockList></BlockList>")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn round_trips_builder() {
        let xml = block_list_xml(&["MDAwMDA=", "MDAwMDE="]);
        let b = parse_block_list(&xml).unwrap();
        assert_eq!(
            b,
            vec![
                BlockRef::Latest("MDAwMDA=".into()),
                BlockRef::Latest("MDAwMDE=".into())
            ]
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "hello",
            "<Blocks><Latest>x</Latest></Blocks>",
            "<BlockList><Latest>x</Latest>",
            "<BlockList><Latest>x</Uncommitted></BlockList>",
            "<BlockList><Block>x</Block></BlockList>",
            "<BlockList><Latest></Latest></BlockList>",
            "<BlockList><Latest/></BlockList>",
            "<BlockList><Latest>x</Latest></BlockList><BlockList/>",
            "<BlockList><Latest>x<Latest>y</Latest></Latest></BlockList>",
            "<BlockList><Latest>a&bogus;</Latest></BlockList>",
        ] {
            assert!(parse_block_list(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn counts_committed_blocks() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks><Block><Name>QUE=</Name><Size>3</Size></Block><Block><Name>QkI=</Name><Size>4</Size></Block></CommittedBlocks><UncommittedBlocks><Block><Name>Q0M=</Name><Size>1</Size></Block></UncommittedBlocks></BlockList>"#;
        assert_eq!(count_committed_blocks(xml), 2);
        assert_eq!(
            count_committed_blocks("<BlockList><CommittedBlocks /></BlockList>"),
            0
        );
        assert_eq!(count_committed_blocks("<BlockList></BlockList>"), 0);
    }
}
