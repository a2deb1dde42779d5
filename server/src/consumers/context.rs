//! What the consumer API and the consumer tasks share: the video API's context (streams, names,
//! the engine), the decode pool that renders pictures, and the channel to the supervisor.

use framelog_imaging::DecodePool;
use tokio::sync::mpsc::UnboundedSender;

use super::runner::Changed;
use crate::background::Background;
use crate::kvs::KvsCtx;

#[derive(Debug, Clone)]
pub struct ConsumersCtx {
    pub video: KvsCtx,
    /// Renders consumer pictures off the async runtime (shared with GetImages).
    pub images: DecodePool,
    /// Tells the supervisor which consumer the API changed.
    pub changes: UnboundedSender<Changed>,
    /// Every consumer task and engine write runs here, so shutdown stops them and waits.
    pub background: Background,
}
