//! ListShards: pages of a stream's shards, chosen by a ShardFilter (which shards were open at a
//! position of the stream's history) and an ExclusiveStartShardId.

use framelog_store::{ShardMeta, StreamMeta};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::context::{KdsCtx, parse_shard_id, shard_json, visible_shards};
use super::streams::{decode_token, encode_token};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

const TOKEN_TTL_MS: u64 = 300_000;
const DEFAULT_RESULTS: usize = 1000;

/// Which shards a request wants, carried in its NextToken so later pages keep the filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Query {
    stream: String,
    after_index: Option<u32>,
    filter: Option<Filter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Filter {
    AfterShard(u32),
    AtTrimHorizon,
    FromTrimHorizon,
    AtLatest,
    AtTimestamp(u64),
    FromTimestamp(u64),
}

pub fn list_shards(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let max = body.int("MaxResults")?;
    let start = body.str("ExclusiveStartShardId")?;
    let token = body.str("NextToken")?;
    let created_ms = body.timestamp_ms("StreamCreationTimestamp")?;
    let filter = read_filter(&body)?;
    let has_stream = body.str("StreamName")?.is_some() || body.str("StreamARN")?.is_some();
    let query = match token {
        Some(_) if has_stream => {
            return Err(ApiError::invalid("NextToken and StreamName cannot be provided together."));
        }
        Some(_) if start.is_some() => {
            return Err(ApiError::invalid("NextToken and ExclusiveStartShardId cannot be provided together."));
        }
        Some(_) if created_ms.is_some() => {
            return Err(ApiError::invalid("NextToken and StreamCreationTimestamp cannot be provided together."));
        }
        Some(token) => query_from_token(ctx, &token)?,
        None if !has_stream => return Err(ApiError::invalid("Either NextToken or StreamName should be provided.")),
        None => {
            let stream = ctx.stream_name(&body)?;
            Query { stream, after_index: start.as_deref().and_then(parse_shard_id), filter: filter? }
        }
    };
    let meta = ctx.lookup(&query.stream)?.meta();
    if let Some(ms) = created_ms
        && ms / 1000 != meta.created_ms / 1000
    {
        return Err(ctx.not_found(&query.stream));
    }
    let max = max.map_or(DEFAULT_RESULTS, |m| m as usize).min(DEFAULT_RESULTS);
    let now_ms = ctx.engine.now_ms();
    let eligible: Vec<&ShardMeta> = selected(&meta, &query, now_ms).collect();
    let page = &eligible[..eligible.len().min(max)];
    let mut out = json!({"Shards": page.iter().map(|s| shard_json(&meta, s.index as usize)).collect::<Vec<_>>()});
    if eligible.len() > max
        && let Some(last) = page.last()
    {
        let next = Query { after_index: Some(last.index), ..query };
        let payload = serde_json::to_string(&next).map_err(|e| ApiError::internal(&e))?;
        out["NextToken"] = encode_token(&payload, "shards", now_ms).into();
    }
    Ok(out)
}

/// The ShardFilter; the outer error is a malformed document, the inner one a filter that lacks
/// what its type needs (reported only when the request names a stream, not a NextToken).
fn read_filter(body: &Document) -> Result<Result<Option<Filter>, ApiError>, ApiError> {
    let Some(doc) = body.object("ShardFilter")? else { return Ok(Ok(None)) };
    let kind = doc.str("Type")?;
    let shard = doc.str("ShardId")?;
    let timestamp_ms = doc.timestamp_ms("Timestamp")?;
    let needs =
        |what: &str, kind: &str| ApiError::invalid(format!("{what} must be specified for ShardFilter type {kind}."));
    Ok(Ok(Some(match kind.as_deref().unwrap_or_default() {
        "AFTER_SHARD_ID" => match shard.as_deref().and_then(parse_shard_id) {
            Some(index) => Filter::AfterShard(index),
            None => return Ok(Err(needs("ShardId", "AFTER_SHARD_ID"))),
        },
        "AT_TRIM_HORIZON" => Filter::AtTrimHorizon,
        "FROM_TRIM_HORIZON" => Filter::FromTrimHorizon,
        "AT_LATEST" => Filter::AtLatest,
        kind @ ("AT_TIMESTAMP" | "FROM_TIMESTAMP") => match (timestamp_ms, kind) {
            (Some(ms), "AT_TIMESTAMP") => Filter::AtTimestamp(ms),
            (Some(ms), _) => Filter::FromTimestamp(ms),
            (None, _) => return Ok(Err(needs("Timestamp", kind))),
        },
        // Unknown types were reported as violations.
        _ => return Ok(Ok(None)),
    })))
}

/// The stream a ListShards NextToken continues (for authorization, which judges a request by
/// the stream it acts on); `None` for a token that is not ours.
pub fn token_stream(token: &str) -> Option<String> {
    let (payload, _) = decode_token(token, "shards").ok()?;
    serde_json::from_str::<Query>(&payload).ok().map(|q| q.stream)
}

fn query_from_token(ctx: &KdsCtx, token: &str) -> Result<Query, ApiError> {
    let (payload, issued_ms) = decode_token(token, "shards")?;
    if ctx.engine.now_ms().saturating_sub(issued_ms) > TOKEN_TTL_MS {
        return Err(ApiError::new(ErrorType::ExpiredNextToken, "The timestamp of the given NextToken has expired"));
    }
    serde_json::from_str(&payload).map_err(|_| ApiError::invalid("Invalid NextToken."))
}

/// The shards a query selects, in shard id order.
fn selected<'a>(meta: &'a StreamMeta, query: &'a Query, now_ms: u64) -> impl Iterator<Item = &'a ShardMeta> {
    // Times before the trim horizon mean the trim horizon: nothing older can be read.
    let horizon_ms = now_ms.saturating_sub(meta.retention_ms());
    visible_shards(meta, now_ms).filter(move |s| query.after_index.is_none_or(|a| s.index > a)).filter(move |s| {
        match &query.filter {
            None | Some(Filter::FromTrimHorizon) => true,
            Some(Filter::AtTrimHorizon) => open_at(meta, s, horizon_ms),
            Some(Filter::AfterShard(index)) => s.index > *index,
            Some(Filter::AtLatest) => s.is_open(),
            Some(Filter::AtTimestamp(ms)) => open_at(meta, s, (*ms).max(horizon_ms)),
            Some(Filter::FromTimestamp(ms)) => s.closed.is_none_or(|c| c.closed_ms > (*ms).max(horizon_ms)),
        }
    })
}

/// Whether a shard was open at `ms`; a time before the stream existed means its first shards.
fn open_at(meta: &StreamMeta, shard: &ShardMeta, ms: u64) -> bool {
    let ms = ms.max(meta.created_ms);
    shard.created_ms <= ms && shard.closed.is_none_or(|c| c.closed_ms > ms)
}

#[cfg(test)]
mod tests {
    use framelog_store::{ShardClosed, StreamKind, new_stream_meta};

    use super::*;

    /// Shard 0 closed at 2,000 into children 1 and 2; shard 2 closed at 5,000 into 3 and 4.
    fn history() -> StreamMeta {
        let mut meta = new_stream_meta("s", StreamKind::Data, "arn", 1, 24, 1_000);
        let child = |index, created_ms| ShardMeta {
            index,
            start_hash: 0,
            end_hash: 0,
            created_ms,
            parent: None,
            adjacent_parent: None,
            closed: None,
        };
        meta.shards[0].closed = Some(ShardClosed { closed_ms: 2_000, end_seq: 1 });
        meta.shards.extend([child(1, 2_000), child(2, 2_000), child(3, 5_000), child(4, 5_000)]);
        meta.shards[2].closed = Some(ShardClosed { closed_ms: 5_000, end_seq: 1 });
        meta
    }

    fn ids(filter: Option<Filter>, now_ms: u64) -> Vec<u32> {
        let meta = history();
        let query = Query { stream: "s".into(), after_index: None, filter };
        selected(&meta, &query, now_ms).map(|s| s.index).collect()
    }

    #[test]
    fn filters_pick_the_shards_open_at_each_point_of_the_history() {
        let now_ms = 10_000;
        assert_eq!(ids(None, now_ms), vec![0, 1, 2, 3, 4]);
        assert_eq!(ids(Some(Filter::AtLatest), now_ms), vec![1, 3, 4]);
        assert_eq!(ids(Some(Filter::AtTimestamp(500)), now_ms), vec![0], "before creation: the first shards");
        assert_eq!(ids(Some(Filter::AtTimestamp(3_000)), now_ms), vec![1, 2]);
        assert_eq!(ids(Some(Filter::FromTimestamp(3_000)), now_ms), vec![1, 2, 3, 4]);
        assert_eq!(ids(Some(Filter::AfterShard(2)), now_ms), vec![3, 4]);
    }

    #[test]
    fn closed_shards_disappear_once_retention_has_expired_their_records() {
        let day_ms = 86_400_000;
        assert_eq!(ids(None, 2_000 + day_ms - 1), vec![0, 1, 2, 3, 4]);
        assert_eq!(ids(None, 2_000 + day_ms), vec![1, 2, 3, 4]);
        assert_eq!(ids(Some(Filter::AtTrimHorizon), 5_000 + day_ms), vec![1, 3, 4]);
    }
}
