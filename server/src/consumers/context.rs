//! What the consumer API and the consumer tasks share: the video API's context (streams, names,
//! the engine), the decode pool that renders pictures, the channel to the supervisor, and what
//! the server lets them reach: the destination policy and the images root.

use framelog_imaging::DecodePool;
use tokio::sync::mpsc::UnboundedSender;

use super::image_files::ImageFiles;
use super::policy::DestinationPolicy;
use super::supervisor::Changed;
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
    /// Which URLs webhooks and notification / image destinations may call.
    pub destinations: DestinationPolicy,
    /// Where image generation's `file://` destinations may write, and how much.
    pub image_files: ImageFiles,
}
