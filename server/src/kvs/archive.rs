//! Archived media reads: ListFragments (JSON) and GetMediaForFragmentList (an MKV stream of
//! chunks, one fragment at a time, so memory holds one fragment however long the list).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use framelog_media::FragmentRecord;
use framelog_store::{Position, StreamHandle};

use super::VideoStream;
use serde_json::{Value, json};

use super::context::KvsCtx;
use super::fragment_number;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::kvs::VIDEO_SHARD;

const MAX_LIST: i64 = 1000;
/// How long after its first byte a fragment may still be committed; bounds server-time scans.
const MAX_UPLOAD_MS: u64 = 120_000;

fn record_of(header: &framelog_store::EntryHeader) -> Result<FragmentRecord, ApiError> {
    FragmentRecord::decode(&header.attrs).map_err(|e| ApiError::internal(&e))
}

fn fragment_json(
    meta: &framelog_store::StreamMeta,
    seq: u64,
    header: &framelog_store::EntryHeader,
    record: &FragmentRecord,
) -> Value {
    json!({
        "FragmentNumber": fragment_number::encode(meta.created_ms, seq),
        "FragmentSizeInBytes": header.payload_len,
        "ProducerTimestamp": record.producer_ts_ms as f64 / 1000.0,
        "ServerTimestamp": record.server_ts_ms as f64 / 1000.0,
        "FragmentLengthInMilliseconds": record.duration_ms,
    })
}

/// Visits, in arrival order from `from_seq`, every fragment whose server timestamp (first byte)
/// lies in `[start_ms, end_ms]`, until `visit` returns false. The scan stops where arrivals pass
/// the end by more than an upload can take, so its cost follows the range, not the stream.
pub fn scan_server_range(
    ctx: &KvsCtx,
    handle: &StreamHandle,
    from_seq: u64,
    (start_ms, end_ms): (u64, u64),
    mut visit: impl FnMut(u64, &framelog_store::EntryHeader, FragmentRecord) -> bool,
) -> Result<(), ApiError> {
    let scan_end_ms = end_ms.saturating_add(MAX_UPLOAD_MS);
    let tip = handle.tip_seq(VIDEO_SHARD)?;
    let mut seq = from_seq;
    while seq < tip {
        let headers = ctx.engine.list_headers(handle, VIDEO_SHARD, seq, tip, 256)?;
        if headers.is_empty() {
            break;
        }
        for item in headers {
            seq = item.seq + 1;
            if item.header.arrival_ms > scan_end_ms {
                return Ok(());
            }
            let record = record_of(&item.header)?;
            if (start_ms..=end_ms).contains(&record.server_ts_ms) && !visit(item.seq, &item.header, record) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A ListFragments page position. The token carries the selector and its range as well, because
/// a client may send NextToken alone (docs/spec/kvs.md#listfragments): the next page must stay inside the same query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageToken {
    kind: String,
    start_ms: u64,
    end_ms: u64,
    /// PRODUCER_TIMESTAMP: (producer ms, seq) of the last fragment listed; otherwise (next seq, 0).
    position: (u64, u64),
}

impl PageToken {
    fn encode(&self) -> String {
        let text = format!("{}:{}:{}:{}:{}", self.kind, self.start_ms, self.end_ms, self.position.0, self.position.1);
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn decode(token: &str) -> Result<PageToken, ApiError> {
        let invalid = || ApiError::invalid("NextToken is not valid for this request.");
        let bytes = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let parts: Vec<&str> = text.split(':').collect();
        let [kind, start, end, a, b] = parts.as_slice() else { return Err(invalid()) };
        let number = |v: &str| v.parse::<u64>().map_err(|_| invalid());
        Ok(PageToken {
            kind: kind.to_string(),
            start_ms: number(start)?,
            end_ms: number(end)?,
            position: (number(a)?, number(b)?),
        })
    }
}

fn archived_stream(ctx: &KvsCtx, body: &Document) -> Result<VideoStream, ApiError> {
    let handle = ctx.stream(body, "StreamARN")?;
    handle.require_archive()?;
    Ok(handle)
}

pub fn list_fragments(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = archived_stream(ctx, &body)?;
    let meta = handle.meta();
    let max = max_results(&body)?;
    let token = body.str("NextToken")?.map(|t| PageToken::decode(&t)).transpose()?;
    let (kind, start_ms, end_ms) = selected_range(&body, token.as_ref())?;
    let filter = metadata_filter(&body)?;
    let listing = Listing { ctx, handle: &handle, meta: &meta, max, kind: &kind, start_ms, end_ms, filter };
    let (fragments, next) = match kind.as_str() {
        "PRODUCER_TIMESTAMP" => listing.by_producer_time(token.as_ref().map(|t| t.position))?,
        "SERVER_TIMESTAMP" => listing.by_server_time(token.as_ref().map(|t| t.position.0))?,
        other => {
            return Err(ApiError::invalid(format!(
                "FragmentSelectorType must be PRODUCER_TIMESTAMP or SERVER_TIMESTAMP, not {other}."
            )));
        }
    };
    let mut out = json!({"Fragments": fragments});
    if let Some(next) = next {
        out["NextToken"] = next.into();
    }
    Ok(out)
}

fn max_results(body: &Document) -> Result<usize, ApiError> {
    let max = body.int("MaxResults")?.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&max) {
        return Err(ApiError::invalid(format!("MaxResults must be between 1 and {MAX_LIST}.")));
    }
    Ok(max as usize)
}

/// The selector type and timestamp range of the query: the NextToken's when one is given
/// (a FragmentSelector beside it is only checked to be an object), else the FragmentSelector's.
fn selected_range(body: &Document, token: Option<&PageToken>) -> Result<(String, u64, u64), ApiError> {
    match (token, body.object("FragmentSelector")?) {
        (Some(token), _) => Ok((token.kind.clone(), token.start_ms, token.end_ms)),
        (None, Some(selector)) => {
            let kind = selector
                .str("FragmentSelectorType")?
                .ok_or_else(|| ApiError::invalid("FragmentSelectorType is required."))?;
            let range =
                selector.object("TimestampRange")?.ok_or_else(|| ApiError::invalid("TimestampRange is required."))?;
            let start = range
                .timestamp_ms("StartTimestamp")?
                .ok_or_else(|| ApiError::invalid("StartTimestamp is required."))?;
            let end =
                range.timestamp_ms("EndTimestamp")?.ok_or_else(|| ApiError::invalid("EndTimestamp is required."))?;
            if end < start {
                return Err(ApiError::invalid("EndTimestamp must not be before StartTimestamp."));
            }
            Ok((kind, start, end))
        }
        (None, None) => Err(ApiError::invalid("FragmentSelector is required unless NextToken is given.")),
    }
}

/// An addition of ours: only fragments carrying a tag (with this value, when given). A page
/// may then hold fewer than MaxResults; clients send the filter again with each NextToken.
fn metadata_filter(body: &Document) -> Result<Option<(String, Option<String>)>, ApiError> {
    match body.object("MetadataFilter")? {
        None => Ok(None),
        Some(filter) => Ok(Some((
            filter.str("TagName")?.ok_or_else(|| ApiError::invalid("MetadataFilter.TagName is required."))?,
            filter.str("TagValue")?,
        ))),
    }
}

/// One ListFragments page being gathered: the query (from the request or its NextToken) and the
/// stream it reads.
struct Listing<'a> {
    ctx: &'a KvsCtx,
    handle: &'a StreamHandle,
    meta: &'a framelog_store::StreamMeta,
    max: usize,
    kind: &'a str,
    start_ms: u64,
    end_ms: u64,
    /// The metadata filter's tag name and, when given, value.
    filter: Option<(String, Option<String>)>,
}

/// A page's fragments and its NextToken, when there is more.
type Page = (Vec<Value>, Option<String>);

impl Listing<'_> {
    fn wanted(&self, record: &FragmentRecord) -> bool {
        self.filter.as_ref().is_none_or(|(name, value)| {
            record.tags.iter().any(|t| t.name == *name && value.as_ref().is_none_or(|v| *v == t.value))
        })
    }

    fn page_token(&self, position: (u64, u64)) -> String {
        PageToken { kind: self.kind.to_string(), start_ms: self.start_ms, end_ms: self.end_ms, position }.encode()
    }

    /// PRODUCER_TIMESTAMP: the producer-time index, from after `after` (the last fragment of the
    /// previous page). One more than a page is read to know whether another follows.
    fn by_producer_time(&self, after: Option<(u64, u64)>) -> Result<Page, ApiError> {
        let (engine, handle, max) = (&self.ctx.engine, self.handle, self.max);
        let page = engine.producer_range(handle, VIDEO_SHARD, self.start_ms, self.end_ms, after, max + 1)?;
        let mut fragments = Vec::new();
        for &(_, seq) in page.iter().take(max) {
            if let Some(header) = engine.header(handle, VIDEO_SHARD, seq)? {
                let record = record_of(&header)?;
                if self.wanted(&record) {
                    fragments.push(fragment_json(self.meta, seq, &header, &record));
                }
            }
        }
        let mut next = None;
        if page.len() > max {
            next = page.get(max - 1).map(|&(ms, seq)| self.page_token((ms, seq)));
        }
        Ok((fragments, next))
    }

    /// SERVER_TIMESTAMP: a scan in arrival order from `from` (the next page's first sequence),
    /// or from the first arrival at the range's start.
    fn by_server_time(&self, from: Option<u64>) -> Result<Page, ApiError> {
        let from = match from {
            Some(seq) => seq,
            None => {
                let start = Position::AtArrivalMs(self.start_ms);
                self.ctx.engine.resolve(self.handle, VIDEO_SHARD, start)?
            }
        };
        let mut fragments = Vec::new();
        let mut next = None;
        scan_server_range(self.ctx, self.handle, from, (self.start_ms, self.end_ms), |seq, header, record| {
            if fragments.len() == self.max {
                next = Some(self.page_token((seq, 0)));
                return false;
            }
            if self.wanted(&record) {
                fragments.push(fragment_json(self.meta, seq, header, &record));
            }
            true
        })?;
        Ok((fragments, next))
    }
}

/// The engine sequences of the requested fragments, checked to exist, in the order asked.
fn requested(ctx: &KvsCtx, handle: &StreamHandle, body: &Document) -> Result<Vec<u64>, ApiError> {
    let meta = handle.meta();
    let list = body.list("Fragments")?.ok_or_else(|| ApiError::invalid("Fragments is required."))?;
    if list.is_empty() || list.len() > MAX_LIST as usize {
        return Err(ApiError::invalid(format!("Fragments must hold 1 to {MAX_LIST} fragment numbers.")));
    }
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let number = crate::document::as_string(item)?;
        let missing =
            || ApiError::new(ErrorType::ResourceNotFound, format!("Fragment {number} was not found in the stream."));
        let seq = fragment_number::decode(&number, meta.created_ms).ok_or_else(missing)?;
        if ctx.engine.header(handle, VIDEO_SHARD, seq)?.is_none() {
            return Err(missing());
        }
        out.push(seq);
    }
    Ok(out)
}

pub async fn get_media_for_fragment_list(State(ctx): State<KvsCtx>, body: Bytes) -> Response {
    let checked = (|| {
        let document = super::parse_document(&body)?;
        let handle = archived_stream(&ctx, &document)?;
        let seqs = requested(&ctx, &handle, &document)?;
        Ok::<_, ApiError>((handle, seqs))
    })();
    let (handle, seqs) = match checked {
        Ok(found) => found,
        Err(error) => return super::error_response(&error),
    };
    let (chunks, response) = super::streamed_response("video/webm", 2);
    crate::access_log::spawn_in_request(async move {
        let created_ms = handle.meta().created_ms;
        for seq in seqs {
            let (engine, stream) = (ctx.engine.clone(), handle.clone());
            let found = tokio::task::spawn_blocking(move || engine.entry_ref(&stream, VIDEO_SHARD, seq)).await;
            // A fragment that expired since the check is skipped rather than failing mid-stream.
            let Ok(Ok((Some(entry), _))) = found else { continue };
            if entry.seq != seq {
                continue;
            }
            let Ok(record) = FragmentRecord::decode(&entry.attrs) else { continue };
            let number = fragment_number::encode(created_ms, seq);
            if !super::chunk_stream::send_fragment(&chunks, &number, &record, entry.payload, None).await {
                return;
            }
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_carry_the_query_and_reject_garbage() {
        let token = PageToken { kind: "PRODUCER_TIMESTAMP".into(), start_ms: 1, end_ms: 2, position: (3, 4) };
        assert_eq!(PageToken::decode(&token.encode()).expect("round trip"), token);
        assert!(PageToken::decode("bm90IGEgdG9rZW4=").is_err());
        assert!(PageToken::decode("%%%").is_err());
    }
}
