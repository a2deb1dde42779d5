//! StartStreamEncryption / StopStreamEncryption, and how streams show their encryption. With
//! encryption on, the engine seals every new record (AES-256-GCM under the stream's data key,
//! docs/security.md#at-rest-encryption); records written before keep the form they had.

use framelog_store::{StreamEncryption, StreamMeta};
use serde_json::{Value, json};

use super::context::KdsCtx;
use crate::document::Document;
use crate::error::ApiError;

/// `EncryptionType` and `KeyId` as KDS shows them.
pub fn shown(meta: &StreamMeta) -> (&'static str, Option<String>) {
    match &meta.encryption {
        Some(encryption) if encryption.enabled => ("KMS", Some(encryption.key_id.clone())),
        _ => ("NONE", None),
    }
}

/// The members every encryption call takes: the stream, `EncryptionType` (KMS) and `KeyId`.
fn parse(ctx: &KdsCtx, body: &Document) -> Result<(String, String), ApiError> {
    let kind = body.str("EncryptionType")?;
    let key_id = body.str("KeyId")?;
    let name = ctx.stream_name(body)?;
    if kind.as_deref() == Some("NONE") {
        return Err(ApiError::invalid("EncryptionType NONE is not valid here; use StopStreamEncryption."));
    }
    Ok((name, key_id.unwrap_or_default()))
}

pub fn start_stream_encryption(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let (name, key_id) = parse(ctx, &body)?;
    let handle = ctx.lookup(&name)?;
    let fresh_key = ctx.engine.new_wrapped_data_key_hex().map_err(|e| ctx.store_error(e))?;
    // The data key is made once per stream and chosen under the metadata lock: two concurrent
    // calls must not each install a key (records sealed under the first would no longer open).
    // Turning encryption off and on keeps it, so older sealed records stay readable.
    ctx.engine
        .update_meta(&handle, |meta| {
            let wrapped_key_hex =
                meta.encryption.take().map_or_else(|| fresh_key.clone(), |existing| existing.wrapped_key_hex);
            meta.encryption = Some(StreamEncryption { enabled: true, key_id: key_id.clone(), wrapped_key_hex });
        })
        .map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}

pub fn stop_stream_encryption(ctx: &KdsCtx, body: Document) -> Result<Value, ApiError> {
    let (name, _key_id) = parse(ctx, &body)?;
    let handle = ctx.lookup(&name)?;
    ctx.engine
        .update_meta(&handle, |meta| {
            if let Some(encryption) = meta.encryption.as_mut() {
                encryption.enabled = false;
            }
        })
        .map_err(|e| ctx.store_error(e))?;
    Ok(json!({}))
}
