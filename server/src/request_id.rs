//! `x-amzn-RequestId` on every response, as AWS services send it (a random UUID-shaped id).

use axum::http::HeaderValue;
use axum::response::Response;

pub fn with_request_id(mut response: Response) -> Response {
    let id: [u8; 16] = rand::random();
    let hex = hex::encode(id);
    let uuid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    if let Ok(value) = HeaderValue::from_str(&uuid) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    response
}
