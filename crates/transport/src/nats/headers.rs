//! The headers of a chunk: what the publisher writes and the receiver reads back.

use async_nats::HeaderMap;

use super::chunk::ChunkMeta;

/// The transport's chunk format version, sent as `Fedengine-Schema`.
pub const SCHEMA: &str = "1";
/// Bytes of `max_payload` kept for headers.
pub const HEADROOM: usize = 16 * 1024;

const H_SCHEMA: &str = "Fedengine-Schema";
const H_ID: &str = "Fedengine-Message-Id";
const H_INDEX: &str = "Fedengine-Chunk-Index";
const H_COUNT: &str = "Fedengine-Chunk-Count";
const H_CRC: &str = "Fedengine-Chunk-Crc32";
const H_SIZE: &str = "Fedengine-Message-Size";
const H_SHA: &str = "Fedengine-Message-Sha256";
/// The W3C trace-context header.
const TRACEPARENT: &str = "traceparent";
const H_TRACE: &str = TRACEPARENT;
/// The longest message id accepted (ids name the sending endpoint, a time and a sequence).
const MAX_ID: usize = 256;

/// The headers of one chunk.
pub(super) fn headers(meta: &ChunkMeta, traceparent: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(H_SCHEMA, SCHEMA);
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{}:{}", meta.message_id, meta.index),
    );
    h.insert(H_ID, meta.message_id.as_str());
    h.insert(H_INDEX, meta.index.to_string());
    h.insert(H_COUNT, meta.count.to_string());
    h.insert(H_CRC, format!("{:08x}", meta.crc32));
    h.insert(H_SIZE, meta.total_len.to_string());
    h.insert(H_SHA, meta.sha256.as_str());
    if let Some(t) = traceparent {
        h.insert(H_TRACE, t);
    }
    h
}

/// Reads a chunk's [`ChunkMeta`] from its headers.
pub(super) fn parse_headers(h: Option<&HeaderMap>) -> Result<ChunkMeta, String> {
    let h = h.ok_or("no headers")?;
    let get = |name: &str| {
        h.get(name)
            .map(|v| v.as_str().to_owned())
            .ok_or_else(|| format!("no {name} header"))
    };
    let schema = get(H_SCHEMA)?;
    if schema != SCHEMA {
        return Err(format!(
            "{H_SCHEMA} {schema} is not {SCHEMA}: the sender runs another engine version (upgrade the older one)"
        ));
    }
    let number = |name: &str| -> Result<u64, String> {
        get(name)?
            .parse()
            .map_err(|_| format!("{name} is not a number"))
    };
    let index = u32::try_from(number(H_INDEX)?).map_err(|_| "chunk index too large")?;
    let count = u32::try_from(number(H_COUNT)?).map_err(|_| "chunk count too large")?;
    let crc32 = u32::from_str_radix(&get(H_CRC)?, 16).map_err(|_| format!("bad {H_CRC}"))?;
    let message_id = get(H_ID)?;
    if message_id.is_empty()
        || message_id.len() > MAX_ID
        || !message_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "{H_ID} is not 1 to {MAX_ID} printable ASCII characters"
        ));
    }
    let sha256 = get(H_SHA)?;
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!("{H_SHA} is not 64 lowercase hex digits"));
    }
    Ok(ChunkMeta {
        message_id,
        index,
        count,
        crc32,
        total_len: number(H_SIZE)?,
        sha256,
    })
}

/// The trace context of a chunk, when it has a well-formed one (at most 256 characters).
pub(super) fn traceparent(h: Option<&HeaderMap>) -> Option<String> {
    let value = h?.get(TRACEPARENT)?.as_str();
    (value.len() <= 256 && value.bytes().all(|b| b.is_ascii_graphic())).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::chunk;

    #[test]
    fn headers_round_trip_and_are_checked() {
        let (meta, _) = chunk::split("node-1-abc-7", b"hello world", 4).remove(1);
        let h = headers(
            &meta,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert_eq!(parse_headers(Some(&h)), Ok(meta.clone()));
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some("node-1-abc-7:1")
        );
        let mut newer = h;
        newer.insert(H_SCHEMA, "2");
        assert!(parse_headers(Some(&newer)).is_err_and(|e| e.contains("Fedengine-Schema 2")));
        let mut long_id = headers(&meta, None);
        long_id.insert(H_ID, "x".repeat(MAX_ID + 1));
        assert!(parse_headers(Some(&long_id)).is_err_and(|e| e.contains(H_ID)));
        let mut bad_digest = headers(&meta, None);
        bad_digest.insert(H_SHA, "00");
        assert!(parse_headers(Some(&bad_digest)).is_err_and(|e| e.contains(H_SHA)));
        assert!(parse_headers(None).is_err());
    }
}
